package yggdcmd

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ygglab/yggdrasil/yggdrasil"
	"github.com/ygglab/yggdrasil/yggdrasil/control"
	"github.com/ygglab/yggdrasil/yggdrasil/mqtt"
	"github.com/ygglab/yggdrasil/yggdrasil/supervisor"
)

func TestConnState(t *testing.T) {
	lost := errors.New("connection lost: EOF")
	tests := []struct {
		name   string
		states []mqtt.State
		stop   bool
		want   control.Connection
	}{
		{name: "start", want: control.Connection{State: control.StateConnecting}},
		{name: "first_attempt_failed", states: []mqtt.State{{}, {Retry: time.Hour, Err: lost}},
			want: control.Connection{State: control.StateConnecting, LastError: lost.Error()}},
		{name: "connected", states: []mqtt.State{{}, {Broker: "tcp://b:1"}},
			want: control.Connection{State: control.StateConnected, Broker: "tcp://b:1"}},
		{name: "lost", states: []mqtt.State{{Broker: "tcp://b:1"}, {Retry: time.Hour, Err: lost}},
			want: control.Connection{State: control.StateReconnecting, LastError: lost.Error()}},
		{name: "lost_then_trying", states: []mqtt.State{{Broker: "tcp://b:1"}, {Retry: time.Hour, Err: lost}, {}},
			want: control.Connection{State: control.StateReconnecting, LastError: lost.Error()}},
		{name: "connected_again", states: []mqtt.State{{Broker: "tcp://b:1"}, {Retry: time.Hour, Err: lost}, {}, {Broker: "tcp://b:1"}},
			want: control.Connection{State: control.StateConnected, Broker: "tcp://b:1", LastError: lost.Error(), Reconnects: 1}},
		{name: "disconnect_command", states: []mqtt.State{{Broker: "tcp://b:1"}, {Offline: true}},
			want: control.Connection{State: control.StateOffline}},
		{name: "stopping_stays", states: []mqtt.State{{Broker: "tcp://b:1"}}, stop: true,
			want: control.Connection{State: control.StateStopping, Broker: "tcp://b:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events := control.NewEvents()
			s := newConnState(events)
			for _, st := range tt.states {
				s.transportState(st)
			}
			if tt.stop {
				s.stopping()
				s.transportState(mqtt.State{Retry: time.Hour})
			}
			got := s.get()
			// Each change is an event, the last one the state served.
			past, _, stop := events.Watch(control.HistorySize)
			stop()
			if n := len(tt.states) + 2*btoi(tt.stop); len(past) != n {
				t.Errorf("%d connection events, want %d", len(past), n)
			} else if n > 0 && (past[n-1].Kind != control.EventConnection || *past[n-1].Connection != got) {
				t.Errorf("last event = %+v, want the connection %+v", past[n-1], got)
			}
			// The times are checked for presence, not value.
			wantRetry := !tt.stop && len(tt.states) > 0 && tt.states[len(tt.states)-1].Retry > 0
			if got.NextRetry.IsZero() == wantRetry {
				t.Errorf("next_retry = %v, want it set: %v", got.NextRetry, wantRetry)
			}
			if got.ConnectedSince.IsZero() != (got.Broker == "") {
				t.Errorf("connected_since = %v with broker %q", got.ConnectedSince, got.Broker)
			}
			if got.LastErrorAt.IsZero() != (got.LastError == "") {
				t.Errorf("last_error_at = %v with last_error %q", got.LastErrorAt, got.LastError)
			}
			ignore := cmpopts.IgnoreFields(control.Connection{}, "ConnectedSince", "LastErrorAt", "NextRetry")
			if diff := cmp.Diff(tt.want, got, ignore); diff != "" {
				t.Errorf("connection (-want +got):\n%s", diff)
			}
		})
	}
}

func TestControlWorkers(t *testing.T) {
	exited := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	reg := yggdrasil.NewRegistry(nil)
	for _, w := range []*yggdrasil.Worker{
		{Handler: "echo", Pid: 10, Owner: "echo-worker", Main: true, Features: map[string]string{"v": "1"}},
		{Handler: "echo2", Pid: 10, Owner: "echo-worker", Main: true, Detached: true},
		{Handler: "stray", Pid: 99},
	} {
		if err := reg.Add(w); err != nil {
			t.Fatal(err)
		}
	}
	sup := []supervisor.WorkerStatus{
		{Name: "echo-worker", State: supervisor.StateRunning, PID: 10, Starts: 1},
		{Name: "crash-worker", State: supervisor.StateRestarting, Starts: 4, Failures: 4,
			LastExit: "exit status 1", LastExitAt: exited, LastErr: errors.New("exit status 1")},
		{Name: "gone-worker", State: supervisor.StateStopped, Starts: 1, LastExit: "signal: terminated", LastExitAt: exited},
	}
	want := []control.Worker{
		{Name: "", Handlers: []string{"stray"}, PID: 99, State: "running"},
		{Name: "crash-worker", Handlers: []string{}, State: "backoff", Restarts: 3,
			LastExit: "exit status 1", LastExitAt: exited, LastError: "exit status 1"},
		{Name: "echo-worker", Handlers: []string{"echo", "echo2"}, PID: 10, State: "running",
			Detached: true, Features: map[string]string{"v": "1"}},
		{Name: "gone-worker", Handlers: []string{}, State: "stopped", LastExit: "signal: terminated", LastExitAt: exited},
	}
	if diff := cmp.Diff(want, controlWorkers(sup, reg)); diff != "" {
		t.Errorf("workers (-want +got):\n%s", diff)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
