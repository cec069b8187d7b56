package yggsimcmd

// Commands that act on a host's connection or on the sim itself:
// disconnect, reconnect, fault and broker.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/ygglab/yggdrasil/sim"
)

// account is the account the v1 cloud-connector routes are called with.
func account() string { return orDefault(os.Getenv("YGGSIM_ACCOUNT"), "0000001") }

const disconnectUsage = `
Usage: yggsim disconnect [--api URL] HOST

Send HOST a "disconnect" command on its control/in topic, through the
cloud-connector API (POST /api/cloud-connector/v1/connection/disconnect,
with the account $YGGSIM_ACCOUNT, default 0000001). yggd publishes an
offline status and stays disconnected until it is restarted. Fails if HOST
is not connected.
`

func runDisconnect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("disconnect", disconnectUsage, stdout, stderr)
	api := apiFlag(fs)
	pos, err := parse(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: disconnect takes one HOST", ErrUsage)
	}
	body := map[string]any{"account": account(), "node_id": pos[0]}
	if err := (apiClient{*api, http.DefaultClient}).do(ctx, "POST", sim.CloudConnectorPath+"/v1/connection/disconnect", body, nil); err != nil {
		return fmt.Errorf("disconnect %s: %w", pos[0], err)
	}
	fmt.Fprintf(stdout, "sent disconnect to %s\n", pos[0])
	return nil
}

const reconnectUsage = `
Usage: yggsim reconnect [--api URL] [--delay D] HOST

Send HOST a "reconnect" command on its control/in topic, through the
cloud-connector API (POST /api/cloud-connector/v1/connection/reconnect,
with the account $YGGSIM_ACCOUNT, default 0000001). yggd disconnects and
connects again after the delay, in whole seconds of at least 1 (the API
refuses 0). Fails if HOST is not connected.
`

func runReconnect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("reconnect", reconnectUsage, stdout, stderr)
	api := apiFlag(fs)
	delay := fs.Duration("delay", time.Second, "how long the host waits before it connects again (whole seconds, at least 1s)")
	pos, err := parse(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: reconnect takes one HOST", ErrUsage)
	}
	if *delay < time.Second || *delay%time.Second != 0 {
		return fmt.Errorf("%w: reconnect --delay %v: want whole seconds, at least 1s", ErrUsage, *delay)
	}
	secs := int(*delay / time.Second)
	body := map[string]any{"account": account(), "node_id": pos[0], "delay": secs}
	if err := (apiClient{*api, http.DefaultClient}).do(ctx, "POST", sim.CloudConnectorPath+"/v1/connection/reconnect", body, nil); err != nil {
		return fmt.Errorf("reconnect %s: %w", pos[0], err)
	}
	fmt.Fprintf(stdout, "sent reconnect to %s (delay %ds)\n", pos[0], secs)
	return nil
}

const faultUsage = `
Usage: yggsim fault [--api URL] cut|blackhole|delay D|heal|status

Break the network between the hosts and the broker, through the fault
proxies of "yggsim serve --proxy" (POST /api/sim/network/ACTION), and print
the network's state:

  cut        close every connection and reset new ones
  blackhole  keep connections open but pass no byte
  delay D    add latency D (like 200ms) both ways
  heal       end cut and blackhole, and remove the delay
  status     only print the state

Fails when the sim runs without --proxy.
`

func runFault(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("fault", faultUsage, stdout, stderr)
	api := apiFlag(fs)
	pos, err := parse(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return fmt.Errorf("%w: fault takes an action: cut, blackhole, delay D, heal or status", ErrUsage)
	}
	method, path := "POST", sim.SimPath+"/network/"+url.PathEscape(pos[0])
	switch action := pos[0]; {
	case action == "delay" && len(pos) == 2:
		d, err := time.ParseDuration(pos[1])
		if err != nil || d < 0 {
			return fmt.Errorf("%w: fault delay %q: want a duration like 200ms", ErrUsage, pos[1])
		}
		path += "?d=" + url.QueryEscape(d.String())
	case action == "status" && len(pos) == 1:
		method, path = "GET", sim.SimPath+"/network"
	case (action == "cut" || action == "blackhole" || action == "heal") && len(pos) == 1:
	default:
		return fmt.Errorf("%w: fault takes cut, blackhole, delay D, heal or status", ErrUsage)
	}
	var st sim.NetState
	if err := (apiClient{*api, http.DefaultClient}).do(ctx, method, path, nil, &st); err != nil {
		return fmt.Errorf("fault %s: %w", pos[0], err)
	}
	fmt.Fprintf(stdout, "network %s delay %v\n", st.Mode, st.Delay)
	return nil
}

const brokerUsage = `
Usage: yggsim broker [--api URL] stop [--lose-sessions] | start

Stop the sim's broker (POST /api/sim/broker/stop): every host loses its
connection, and new ones are refused. Sessions, queued QoS 1 messages and
retained messages are kept, unless --lose-sessions. "start" starts it again
on the same ports (POST /api/sim/broker/start). Fails with an external
broker.
`

func runBroker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("broker", brokerUsage, stdout, stderr)
	api := apiFlag(fs)
	lose := fs.Bool("lose-sessions", false, "with stop: forget sessions, queued messages and retained messages")
	pos, err := parse(fs, args, stdout)
	if err != nil {
		return err
	}
	var path string
	switch {
	case len(pos) == 1 && pos[0] == "stop":
		path = sim.SimPath + "/broker/stop?lose_sessions=" + strconv.FormatBool(*lose)
	case len(pos) == 1 && pos[0] == "start" && !*lose:
		path = sim.SimPath + "/broker/start"
	default:
		return fmt.Errorf("%w: broker takes stop [--lose-sessions] or start", ErrUsage)
	}
	var info sim.Info
	if err := (apiClient{*api, http.DefaultClient}).do(ctx, "POST", path, nil, &info); err != nil {
		return fmt.Errorf("broker %s: %w", pos[0], err)
	}
	state := "stopped"
	if info.BrokerRunning {
		state = "running on " + info.MQTT
	}
	fmt.Fprintf(stdout, "broker %s\n", state)
	return nil
}
