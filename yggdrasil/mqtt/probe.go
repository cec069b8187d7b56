package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// ErrRefused is wrapped by a Probe's methods when the broker refused what
// was asked: a subscription (SUBACK 0x80), or a QoS 1 publish (an MQTT
// 3.1.1 broker can only close the connection, as mochi does; mosquitto
// drops the message and acknowledges it, which a probe cannot tell from
// success).
var ErrRefused = errors.New("refused by the broker")

// ProbeConfig configures a Probe.
type ProbeConfig struct {
	Broker   string      // one broker URL
	ClientID string      // never yggd's own: a second session with it takes over yggd's
	TLS      *tls.Config // for ssl://, wss://, ...
	Timeout  time.Duration
}

// Probe is a short-lived test connection to a broker, for ygg check: clean
// session (nothing stays on the broker after it), no will, no reconnect,
// and one operation at a time so that each refusal is told apart.
type Probe struct {
	c       paho.Client
	lost    chan error
	timeout time.Duration
}

// DialProbe connects, waiting at most cfg.Timeout (10 s when zero).
func DialProbe(ctx context.Context, cfg ProbeConfig) (*Probe, error) {
	p := &Probe{lost: make(chan error, 1), timeout: cfg.Timeout}
	if p.timeout <= 0 {
		p.timeout = 10 * time.Second
	}
	opts := paho.NewClientOptions().
		AddBroker(cfg.Broker).
		SetClientID(cfg.ClientID).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(p.timeout).
		SetWriteTimeout(p.timeout).
		SetDefaultPublishHandler(func(paho.Client, paho.Message) {}).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case p.lost <- err:
			default:
			}
		})
	if cfg.TLS != nil {
		opts.SetTLSConfig(cfg.TLS)
	}
	p.c = paho.NewClient(opts)
	if err := p.wait(ctx, p.c.Connect()); err != nil {
		p.c.Disconnect(0)
		return nil, fmt.Errorf("connect %s as %s: %w", cfg.Broker, cfg.ClientID, err)
	}
	return p, nil
}

// Subscribe subscribes to topic at QoS 1; a refusal wraps ErrRefused.
func (p *Probe) Subscribe(ctx context.Context, topic string) error {
	tok := p.c.Subscribe(topic, 1, nil)
	if err := p.wait(ctx, tok); err != nil {
		return fmt.Errorf("subscribe %s: %w", topic, err)
	}
	if code, ok := tok.(*paho.SubscribeToken).Result()[topic]; ok && code >= 0x80 {
		return fmt.Errorf("subscribe %s: %w (code %#x)", topic, ErrRefused, code)
	}
	return nil
}

// Publish publishes payload on topic at QoS 1 and waits for the broker's
// acknowledgement; the connection closed instead wraps ErrRefused.
func (p *Probe) Publish(ctx context.Context, topic string, payload []byte) error {
	if err := p.wait(ctx, p.c.Publish(topic, 1, false, payload)); err != nil {
		if errors.Is(err, errLost) {
			return fmt.Errorf("publish %s: %w (the broker closed the connection)", topic, ErrRefused)
		}
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return nil
}

// Close disconnects.
func (p *Probe) Close() { p.c.Disconnect(100) }

var errLost = errors.New("connection lost")

// wait waits for tok, the connection's loss, ctx or the timeout.
func (p *Probe) wait(ctx context.Context, tok paho.Token) error {
	t := time.NewTimer(p.timeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		err := tok.Error()
		if err != nil {
			select {
			case lost := <-p.lost:
				p.lost <- lost
				return fmt.Errorf("%w: %w", errLost, lost)
			default:
			}
			// paho fails the tokens in flight before it calls the
			// connection-lost handler, so the loss may not be in p.lost
			// yet; the token's own error says so ("connection lost
			// before Publish completed").
			if !p.c.IsConnectionOpen() || strings.HasPrefix(err.Error(), "connection lost") {
				return fmt.Errorf("%w: %w", errLost, err)
			}
		}
		return err
	case err := <-p.lost:
		p.lost <- err // later waits see it too
		return fmt.Errorf("%w: %w", errLost, err)
	case <-t.C:
		return fmt.Errorf("no answer from the broker within %s", p.timeout)
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
