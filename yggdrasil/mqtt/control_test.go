package mqtt_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil"
	"github.com/ygglab/yggdrasil/yggdrasil/mqtt"
)

// reconnecter is a router that reconnects at once on every "reconnect"
// command, as yggd's does, and reports every command it runs.
type reconnecter struct {
	handler
	tr  *mqtt.Transport
	ran chan string
}

func (r reconnecter) HandleControl(p []byte) {
	cmd := string(p)
	if cmd == "reconnect" {
		r.tr.Reconnect(0)
	}
	r.ran <- cmd
}

// TestCommandRunsOnce: a command that closes the connection (reconnect,
// disconnect) is acknowledged before it runs, so the broker does not send
// it again on the next connection, where it would run a second time.
func TestCommandRunsOnce(t *testing.T) {
	s := startSim(t)
	tr := mqtt.New(mqtt.Config{Brokers: []string{s.BrokerURL()}, ClientID: "host1"})
	h := reconnecter{tr: tr, ran: make(chan string, 16)}
	runWith(t, tr, h)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	topic := yggdrasil.Topic(yggdrasil.DefaultTopicPrefix, "host1", yggdrasil.KindControl, yggdrasil.DirIn)
	if err := tr.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	since := s.LastSeq()
	if err := s.Publish(ctx, topic, []byte("reconnect"), 1, false); err != nil {
		t.Fatal(err)
	}
	ran := []string{<-h.ran}
	awaitConnect(t, s, since)
	// A reconnect sent again comes as the session resumes, before this.
	if err := s.Publish(ctx, topic, []byte("marker"), 1, false); err != nil {
		t.Fatal(err)
	}
	for ran[len(ran)-1] != "marker" {
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
