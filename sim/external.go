package sim

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ygglab/yggdrasil/yggdrasil"
)

// external is the cloud side's client of an external broker: it publishes
// for the sim and records all traffic by subscribing to "#".
type external struct {
	url    string
	log    *slog.Logger
	record func(topic string, payload []byte, qos byte, retained bool)
	client paho.Client
}

func (e *external) start() error {
	opts := paho.NewClientOptions().
		AddBroker(e.url).
		SetClientID("yggsim-cloud-" + yggdrasil.NewMessageID()[:8]).
		SetCleanSession(true).
		SetAutoReconnect(true).
		SetConnectRetry(false).
		SetOrderMatters(true).
		SetConnectTimeout(10 * time.Second)
	subscribed := make(chan error, 1)
	opts.SetOnConnectHandler(func(c paho.Client) {
		// (Re)subscribe on every connect: the session is clean.
		tok := c.Subscribe("#", 1, func(_ paho.Client, m paho.Message) {
			e.record(m.Topic(), append([]byte(nil), m.Payload()...), m.Qos(), m.Retained())
		})
		var err error
		if !tok.WaitTimeout(10 * time.Second) {
			err = fmt.Errorf("subscribe to all topics: timed out")
		} else if err = tok.Error(); err != nil {
			e.log.Error("subscribe to all topics of the external broker", "error", err)
		}
		select {
		case subscribed <- err:
		default:
		}
	})
	opts.SetConnectionLostHandler(func(_ paho.Client, err error) {
		e.log.Warn("lost the external broker", "broker", e.url, "error", err)
	})
	e.client = paho.NewClient(opts)
	tok := e.client.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		return fmt.Errorf("connect external broker %s: timed out", e.url)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("connect external broker %s: %w", e.url, err)
	}
	if err := <-subscribed; err != nil {
		e.client.Disconnect(0)
		return fmt.Errorf("connect external broker %s: %w", e.url, err)
	}
	return nil
}

func (e *external) publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) error {
	tok := e.client.Publish(topic, qos, retain, payload)
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *external) stop() {
	if e.client != nil {
		e.client.Disconnect(250)
	}
}
