package testscript

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	goscript "github.com/rogpeppe/go-internal/testscript"

	"github.com/ygglab/yggdrasil/yggdrasil"
)

// TestCommands runs testdata/*.txtar, the scripts that exercise our
// commands, with one extra command standing in for yggd: fake-host.
func TestCommands(t *testing.T) {
	p := goscript.Params{
		Dir:                 "testdata",
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		Cmds:                map[string]func(*goscript.TestScript, bool, []string){"fake-host": cmdFakeHost},
	}
	if err := Setup(&p); err != nil {
		t.Fatal(err)
	}
	goscript.Run(t, p)
}

// cmdFakeHost connects a paho client as host id to $YGG_BROKER for the rest
// of the script: it publishes a retained online status (its will is a
// retained offline status), echoes data messages to data/out (with -dup,
// two different answers to each) and answers ping with pong.
//
//	fake-host [-dup] id
func cmdFakeHost(ts *goscript.TestScript, neg bool, args []string) {
	fs := flag.NewFlagSet("fake-host", flag.ContinueOnError)
	dup := fs.Bool("dup", false, "answer every data message twice")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 || neg {
		ts.Fatalf("usage: fake-host [-dup] id")
	}
	id := fs.Arg(0)
	topic := func(kind, dir string) string { return yggdrasil.Topic(yggdrasil.DefaultTopicPrefix, id, kind, dir) }
	status := func(state string) []byte {
		b, _ := json.Marshal(yggdrasil.ConnectionStatus{Type: yggdrasil.TypeConnectionStatus, MessageID: yggdrasil.NewMessageID(),
			Version: 1, Sent: time.Now(), Content: yggdrasil.StatusContent{State: state, Dispatchers: map[string]map[string]string{"echo": nil}}})
		return b
	}
	opts := paho.NewClientOptions().AddBroker(ts.Getenv("YGG_BROKER")).SetClientID(id).
		SetAutoReconnect(true).SetMaxReconnectInterval(100*time.Millisecond).SetConnectRetry(true).
		SetConnectRetryInterval(100*time.Millisecond).SetKeepAlive(2*time.Second).SetPingTimeout(time.Second).
		SetBinaryWill(topic("control", "out"), status(yggdrasil.StateOffline), 1, true).
		SetStore(copyStore{paho.NewMemoryStore()})
	onData := func(c paho.Client, m paho.Message) {
		d, err := yggdrasil.DecodeData(m.Payload())
		if err != nil {
			return
		}
		for range map[bool]int{false: 1, true: 2}[*dup] {
			reply, _ := json.Marshal(yggdrasil.Data{Type: yggdrasil.TypeData, MessageID: yggdrasil.NewMessageID(), ResponseTo: d.MessageID,
				Version: 1, Sent: time.Now(), Directive: d.Directive, Content: d.Content})
			c.Publish(topic("data", "out"), 1, false, reply)
		}
	}
	onControl := func(c paho.Client, m paho.Message) {
		cmd, err := yggdrasil.DecodeCommand(m.Payload())
		if err != nil || cmd.Content.Command != yggdrasil.CommandPing {
			return
		}
		pong, _ := json.Marshal(yggdrasil.Event{Type: yggdrasil.TypeEvent, MessageID: yggdrasil.NewMessageID(),
			ResponseTo: cmd.MessageID, Version: 1, Sent: time.Now(), Content: yggdrasil.EventPong})
		c.Publish(topic("control", "out"), 1, false, pong)
	}
	opts.SetOnConnectHandler(func(c paho.Client) {
		c.Subscribe(topic("data", "in"), 1, onData).Wait()
		c.Subscribe(topic("control", "in"), 1, onControl).Wait()
		c.Publish(topic("control", "out"), 1, true, status(yggdrasil.StateOnline))
	})
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		ts.Fatalf("fake-host %s: connect: %v", id, tok.Error())
	}
	ts.Defer(func() { c.Disconnect(0) })
}

func TestTopicMatch(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b/c", "a/b/c", true},
		{"a/b/c", "a/b/d", false},
		{"a/+/c", "a/x/c", true},
		{"a/+", "a/x/c", false},
		{"a/#", "a/x/c", true},
		{"#", "a", true},
		{"a/b/c", "a/b", false},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(fmt.Sprintf("%s_%s", tt.filter, tt.topic), "/", "."), func(t *testing.T) {
			if got := topicMatch(tt.filter, tt.topic); got != tt.want {
				t.Errorf("topicMatch(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
			}
		})
	}
}

// copyStore keeps copies of the packets paho stores. paho 1.5.1's memory
// store hands resume the very packet it stored, and resume sets its DUP
// flag while the reconnected connection may be writing that packet from
// its outgoing queue: a data race (seen in broker_faults under -race). A
// copy each way leaves nothing shared.
type copyStore struct{ paho.Store }

func (s copyStore) Put(key string, p packets.ControlPacket) { s.Store.Put(key, clonePacket(p)) }
func (s copyStore) Get(key string) packets.ControlPacket    { return clonePacket(s.Store.Get(key)) }

// clonePacket copies p through its wire form.
func clonePacket(p packets.ControlPacket) packets.ControlPacket {
	if p == nil {
		return nil
	}
	var b bytes.Buffer
	if err := p.Write(&b); err != nil {
		panic(fmt.Sprintf("fake-host: copy a %T: %v", p, err))
	}
	c, err := packets.ReadPacket(&b)
	if err != nil {
		panic(fmt.Sprintf("fake-host: copy a %T: %v", p, err))
	}
	return c
}
