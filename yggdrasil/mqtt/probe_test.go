package mqtt_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/ygglab/yggdrasil/sim"
	"github.com/ygglab/yggdrasil/yggdrasil/mqtt"
)

// TestProbe: a probe tells a granted subscription and publish from refused
// ones, on the sim's broker with its ACL.
func TestProbe(t *testing.T) {
	s := &sim.Server{TLSAddr: sim.Off, APIAddr: sim.Off, Logger: slog.New(slog.DiscardHandler)}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	tests := []struct {
		name    string
		deny    bool
		op      func(p *mqtt.Probe) error
		refused bool
	}{
		{name: "subscribe_own", op: func(p *mqtt.Probe) error { return p.Subscribe(ctx, "yggdrasil/h1/control/in") }},
		{name: "subscribe_other", op: func(p *mqtt.Probe) error { return p.Subscribe(ctx, "yggdrasil/h2/control/in") }, refused: true},
		{name: "subscribe_own_denied", deny: true, op: func(p *mqtt.Probe) error { return p.Subscribe(ctx, "yggdrasil/h1/data/in") }, refused: true},
		{name: "publish_own", op: func(p *mqtt.Probe) error { return p.Publish(ctx, "yggdrasil/h1/data/out", nil) }},
		{name: "publish_other", op: func(p *mqtt.Probe) error { return p.Publish(ctx, "yggdrasil/h2/data/out", nil) }, refused: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.DenyHost("h1", tt.deny); err != nil {
				t.Fatal(err)
			}
			p, err := mqtt.DialProbe(ctx, mqtt.ProbeConfig{Broker: s.BrokerURL(), ClientID: "h1/check", Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			err = tt.op(p)
			if got := errors.Is(err, mqtt.ErrRefused); got != tt.refused {
				t.Errorf("err = %v, want refused=%v", err, tt.refused)
			}
		})
	}
}

func TestProbeUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := mqtt.DialProbe(ctx, mqtt.ProbeConfig{Broker: silentBroker(t), ClientID: "h1/check", Timeout: 200 * time.Millisecond})
	if err == nil {
		t.Fatal("DialProbe to a silent broker: ok, want an error")
	}
}
