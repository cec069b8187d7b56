package mqtt_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ygglab/yggdrasil/sim"
	"github.com/ygglab/yggdrasil/yggdrasil"
	"github.com/ygglab/yggdrasil/yggdrasil/mqtt"
)

// reconnecter is a router that reconnects at once on every "reconnect"
// command, as yggd's does, and reports every command it runs and every
// connection.
type reconnecter struct {
	handler
	tr        *mqtt.Transport
	ran       chan string
	connected chan struct{}
}

func (r reconnecter) HandleControl(p []byte) {
	cmd := string(p)
	if cmd == "reconnect" {
		r.tr.Reconnect(0)
	}
	r.ran <- cmd
}

func (r reconnecter) Connected() { r.connected <- struct{}{} }

// TestCommandRunsOnce: a command that closes the connection (reconnect,
// disconnect) is acknowledged before it runs, and the connection closes
// only once the broker has acknowledged the offline status published after
// that, so the broker does not send the command again on the next
// connection, where it would run a second time. (Without the offline
// status's round trip, mochi sent it again in about 1 run in 100 on a
// loaded machine: it hands the session over before it has read the old
// connection's last packets.)
func TestCommandRunsOnce(t *testing.T) {
	s := startSim(t)
	tr := mqtt.New(mqtt.Config{Brokers: []string{s.BrokerURL()}, ClientID: "host1"})
	h := reconnecter{tr: tr, ran: make(chan string, 16), connected: make(chan struct{}, 16)}
	runWith(t, tr, h)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	next := func(what string) {
		t.Helper()
		select {
		case <-h.connected:
		case <-ctx.Done():
			t.Fatalf("no %s connection", what)
		}
	}
	topic := yggdrasil.Topic(yggdrasil.DefaultTopicPrefix, "host1", yggdrasil.KindControl, yggdrasil.DirIn)
	next("first")
	since := s.LastSeq()
	if err := s.Publish(ctx, topic, []byte("reconnect"), 1, false); err != nil {
		t.Fatal(err)
	}
	next("second")
	// The transport said it was going offline: a retained status of its
	// own, not the broker's will.
	if _, err := s.Await(ctx, since, func(m sim.Message) bool {
		return m.Topic == h.WillTopic() && m.From == "host1" && m.Retain && !m.Will
	}); err != nil {
		t.Fatalf("no retained offline status published on %s: %v", h.WillTopic(), err)
	}
	// A reconnect sent again comes as the session resumes, before this.
	if err := s.Publish(ctx, topic, []byte("marker"), 1, false); err != nil {
		t.Fatal(err)
	}
	var ran []string
	for len(ran) == 0 || ran[len(ran)-1] != "marker" {
		select {
		case cmd := <-h.ran:
			ran = append(ran, cmd)
		case <-ctx.Done():
			t.Fatalf("commands run: %v, never the marker", ran)
		}
	}
	if got := strings.Join(ran, " "); got != "reconnect marker" {
		t.Errorf("commands run: %s, want reconnect marker", got)
	}
}
