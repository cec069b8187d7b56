package mqtt_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/ygglab/yggdrasil/sim"
	"github.com/ygglab/yggdrasil/yggdrasil"
	"github.com/ygglab/yggdrasil/yggdrasil/mqtt"
)

// awaitConnect waits until s records the empty data/out message a
// transport publishes on each connection, after since.
func awaitConnect(t *testing.T, s *sim.Server, since int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	topic := yggdrasil.Topic(yggdrasil.DefaultTopicPrefix, "host1", yggdrasil.KindData, yggdrasil.DirOut)
	if _, err := s.Await(ctx, since, func(m sim.Message) bool { return m.Topic == topic && m.From == "host1" }); err != nil {
		t.Fatalf("no connection to %s: %v", s.BrokerURL(), err)
	}
}

func TestUpdate(t *testing.T) {
	t.Run("connected_moves_to_the_new_broker", func(t *testing.T) {
		a, b := startSim(t), startSim(t)
		tr := mqtt.New(mqtt.Config{Brokers: []string{a.BrokerURL()}, ClientID: "host1"})
		run(t, tr)
		awaitConnect(t, a, 0)
		tr.Update([]string{b.BrokerURL()}, nil)
		awaitConnect(t, b, 0)
	})
	t.Run("failing_tries_the_new_broker", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := "tcp://" + ln.Addr().String()
		ln.Close() // connections are refused
		b := startSim(t)
		tr := mqtt.New(mqtt.Config{Brokers: []string{dead}, ClientID: "host1"})
		run(t, tr)
		tr.Update([]string{b.BrokerURL()}, nil)
		awaitConnect(t, b, 0)
	})
}
