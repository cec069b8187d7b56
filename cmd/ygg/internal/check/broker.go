package check

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil"
	"github.com/ygglab/yggdrasil/yggdrasil/config"
	"github.com/ygglab/yggdrasil/yggdrasil/control"
	"github.com/ygglab/yggdrasil/yggdrasil/mqtt"
)

// defaultPorts are the ports of broker URLs that name none.
var defaultPorts = map[string]string{
	"tcp": "1883", "mqtt": "1883", "ws": "80",
	"ssl": "8883", "mqtts": "8883", "tls": "8883", "tcps": "8883", "wss": "443",
}

// Brokers checks each broker of the configuration: its host resolves, it
// accepts TCP connections, and for a TLS scheme its certificate verifies
// with ca-root (the system's roots without it). It opens no MQTT session.
// reachable lists the brokers that passed, in order.
func Brokers(ctx context.Context, cfg config.Config, id Ident, timeout time.Duration) (res []Result, reachable []string) {
	for _, b := range cfg.Brokers {
		r := Broker(ctx, b, cfg.CARoot, id.TLS, timeout)
		if r.Status == OK {
			reachable = append(reachable, b)
		}
		res = append(res, r)
	}
	return res, reachable
}

// Broker checks one broker URL; tlsConfig is nil when ca-root does not
// load.
func Broker(ctx context.Context, broker, caRoot string, tlsConfig *tls.Config, timeout time.Duration) Result {
	u, err := url.Parse(broker)
	if err != nil {
		return failed(NameBroker, "correct broker in the configuration", "%v", err)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = defaultPorts[u.Scheme]
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		return failed(NameBroker, "correct the broker's host name in the configuration, or the host's DNS settings",
			"%s: cannot resolve %s: %v", broker, host, err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return failed(NameBroker, "check that the broker runs and that no firewall blocks "+net.JoinHostPort(host, port),
			"%s is unreachable: %v", broker, unwrapOp(err))
	}
	defer conn.Close()
	if !config.IsTLSScheme(u.Scheme) {
		return ok(NameBroker, "%s resolves (%s) and accepts connections (no TLS)", broker, strings.Join(addrs, ", "))
	}
	if tlsConfig == nil {
		return skipped(NameBroker, "%s accepts connections; its TLS %s", broker, errNoIdentity)
	}
	c := tlsConfig.Clone()
	c.ServerName = host
	tc := tls.Client(conn, c)
	if err := tc.HandshakeContext(ctx); err != nil {
		var ua x509.UnknownAuthorityError
		if errors.As(err, &ua) {
			issuer := "an unknown CA"
			if ua.Cert != nil {
				issuer = fmt.Sprintf("%q", ua.Cert.Issuer.CommonName)
			}
			if caRoot == "" {
				return failed(NameBroker, "set ca-root to the CA that signed the broker's certificate",
					"%s: the broker's certificate, issued by %s, is not signed by a CA the system trusts (no ca-root)", broker, issuer)
			}
			return failed(NameBroker, "set ca-root to the CA that signed the broker's certificate",
				"%s: the broker's certificate, issued by %s, is not signed by the CA in ca-root %s", broker, issuer, caRoot)
		}
		return failed(NameBroker, "check that the broker speaks TLS on this port, and that it trusts the CA that signed cert-file",
			"%s: TLS handshake: %v", broker, err)
	}
	how := "the system's roots"
	if caRoot != "" {
		how = "ca-root " + caRoot
	}
	return ok(NameBroker, "%s resolves (%s), accepts TLS, and its certificate verifies with %s", broker, strings.Join(addrs, ", "), how)
}

// unwrapOp drops net.OpError's repetition of the address.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// otherHost is the host whose topic the check expects to be refused.
const otherHost = "ygg-check-other-host"

// Topics connects to the first reachable broker as the host, with the
// client id yggdrasil.CheckClientSuffix appended (never yggd's own, whose
// session a second connection would take over), and checks that the
// broker lets it subscribe to its own control/in and data/in and publish
// (an empty message, as yggd does at each connection) to its data/out,
// and that it refuses it another host's data/in. Accepting another host's
// topic is a warning: the broker does not enforce ACLs. A refusal is an
// error, unless yggd itself is connected: then yggd's own subscriptions
// work, and the refusal only says that the broker does not let the check's
// client id act for the host (it keys its ACL on the client id), a warning.
func Topics(ctx context.Context, cfg config.Config, id Ident, reachable []string, yggd *control.Status, timeout time.Duration) Result {
	switch {
	case cfg.CertFile != "" && id.Leaf == nil, id.TLS == nil:
		return skipped(NameTopics, "%s", errNoIdentity)
	case len(reachable) == 0:
		return skipped(NameTopics, "needs a broker that accepts connections")
	}
	broker, checkID := reachable[0], id.ClientID+yggdrasil.CheckClientSuffix
	yggdConnected := yggd != nil && yggd.Connection.State == control.StateConnected
	refused := func(what string, err error) Result {
		if yggdConnected {
			return warning(NameTopics, fmt.Sprintf("let the broker accept client id %s for this host's topics (README: ygg check), or ignore this", checkID),
				"%s refused the check's connection %s (%v), but yggd's own connection works", broker, what, err)
		}
		return failed(NameTopics, fmt.Sprintf("fix the broker's ACL: host %s must subscribe to %s and publish to %s",
			id.ClientID, yggdrasil.Topic(cfg.TopicPrefix, id.ClientID, "+", yggdrasil.DirIn), yggdrasil.Topic(cfg.TopicPrefix, id.ClientID, "+", yggdrasil.DirOut)),
			"%s refuses this host its own topics: %v", broker, err)
	}

	p, err := mqtt.DialProbe(ctx, mqtt.ProbeConfig{Broker: broker, ClientID: checkID, TLS: id.TLS, Timeout: timeout})
	if err != nil {
		if yggdConnected {
			return refused("as "+checkID, err)
		}
		advice := fmt.Sprintf("see the broker's log for why it refused client id %s with this certificate", checkID)
		if strings.Contains(err.Error(), "remote error: tls") {
			advice = "make sure the broker trusts the CA that signed cert-file and that the certificate is valid"
		}
		return failed(NameTopics, advice, "%s refused a connection with this identity: %v", broker, err)
	}
	defer p.Close()
	for _, kind := range []string{yggdrasil.KindControl, yggdrasil.KindData} {
		topic := yggdrasil.Topic(cfg.TopicPrefix, id.ClientID, kind, yggdrasil.DirIn)
		if err := p.Subscribe(ctx, topic); err != nil {
			return refused("subscribing to "+topic, err)
		}
	}
	other := yggdrasil.Topic(cfg.TopicPrefix, otherHost, yggdrasil.KindData, yggdrasil.DirIn)
	otherErr := p.Subscribe(ctx, other)
	if otherErr != nil && !errors.Is(otherErr, mqtt.ErrRefused) {
		return failed(NameTopics, "see the broker's log", "%s: %v", broker, otherErr)
	}
	out := yggdrasil.Topic(cfg.TopicPrefix, id.ClientID, yggdrasil.KindData, yggdrasil.DirOut)
	if err := p.Publish(ctx, out, []byte{}); err != nil {
		return refused("publishing to "+out, err)
	}
	if otherErr == nil {
		return warning(NameTopics, "configure the broker's ACL so that each host may use only its own topics",
			"broker does not enforce ACLs: %s let this host subscribe to another host's topic %s", broker, other)
	}
	return ok(NameTopics, "as %s on %s: subscribed to its own control/in and data/in, published to its data/out, and was refused another host's topic",
		checkID, broker)
}
