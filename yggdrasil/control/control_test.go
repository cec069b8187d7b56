package control

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ygglab/yggdrasil/fakes/logbuf"
)

// shortDir returns a directory short enough for a socket path (sun_path
// holds about 108 bytes; t.TempDir can be longer).
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startServer runs a server on a fresh socket until the test ends.
func startServer(t *testing.T, cfg Config, setup func(*Server)) (*Server, *Client) {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(shortDir(t), "control.sock")
	}
	s, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s, Dial(cfg.Path)
}

var sample = Status{
	PID: 42,
	Connection: Connection{State: StateConnected, Broker: "tcp://b:1883",
		ConnectedSince: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Reconnects: 2},
	Identity: Identity{ClientID: "host1"},
	Workers: []Worker{{Name: "echo-worker", Handlers: []string{"echo"}, PID: 7, State: WorkerRunning,
		Features: map[string]string{"v": "1"}}},
	Queue:    Queue{Answers: 3, Bytes: 300, Dropped: 1},
	Counters: Counters{Received: 5, Delivered: 4, Duplicates: 1, Answers: 4},
}

func TestHandlers(t *testing.T) {
	level := new(slog.LevelVar)
	_, c := startServer(t, Config{Status: func() Status { return sample }, Level: level}, nil)
	ctx := t.Context()

	t.Run("status", func(t *testing.T) {
		got, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := sample
		want.Version = Version
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Status (-want +got):\n%s", diff)
		}
	})
	t.Run("workers", func(t *testing.T) {
		got, err := c.Workers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(sample.Workers, got); diff != "" {
			t.Errorf("Workers (-want +got):\n%s", diff)
		}
	})

	tests := []struct {
		name      string
		level     string
		want      slog.Level
		wantError string
	}{
		{name: "debug", level: "debug", want: slog.LevelDebug},
		{name: "trace_upper_case", level: "TRACE", want: LevelTrace},
		{name: "warn", level: "warn", want: slog.LevelWarn},
		{name: "unknown_kept", level: "loud", want: slog.LevelWarn, wantError: `level: "loud" is not one of`},
	}
	for _, tt := range tests {
		t.Run("log_level_"+tt.name, func(t *testing.T) {
			got, err := c.SetLogLevel(ctx, tt.level)
			switch {
			case tt.wantError != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantError) {
					t.Errorf("SetLogLevel(%q) = %q, %v; want error %q", tt.level, got, err, tt.wantError)
				}
			case err != nil:
				t.Fatalf("SetLogLevel(%q): %v", tt.level, err)
			case got != LevelName(tt.want):
				t.Errorf("SetLogLevel(%q) = %q, want %q", tt.level, got, LevelName(tt.want))
			}
			if level.Level() != tt.want {
				t.Errorf("level is %v, want %v", level.Level(), tt.want)
			}
		})
	}

	t.Run("wrong_method", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://yggd/v1/status", nil)
		resp, err := c.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST /v1/status: %s, want 405", resp.Status)
		}
	})
}

func TestEmptyWorkersIsAList(t *testing.T) {
	_, c := startServer(t, Config{Status: func() Status { return Status{} }}, nil)
	st, err := c.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Workers == nil || st.Version != Version {
		t.Errorf("Status = %+v, want version %d and an empty list of workers", st, Version)
	}
}

func TestSocketMode(t *testing.T) {
	s, _ := startServer(t, Config{}, nil)
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket of mode 0600", fi.Mode())
	}
}

func TestRefusedPeer(t *testing.T) {
	var logs logbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	_, c := startServer(t, Config{Status: func() Status { return sample }, Log: log}, func(s *Server) {
		s.cred = func(*net.UnixConn) (uint32, uint32, error) { return 4242, 4242, nil }
	})
	for range 2 {
		_, err := c.Status(t.Context())
		if !errors.Is(err, ErrNotAllowed) {
			t.Fatalf("Status from uid 4242: %v, want ErrNotAllowed", err)
		}
	}
	if n := strings.Count(logs.String(), "uid=4242"); n != 1 {
		t.Errorf("refusal of uid 4242 logged %d times, want once:\n%s", n, logs.String())
	}
}

// TestGroupMayOnlyRead: a member of control-group reads the state, and
// is refused what acts (the log level, local dispatch).
func TestGroupMayOnlyRead(t *testing.T) {
	var level slog.LevelVar
	dispatched := false
	_, c := startServer(t, Config{Group: "4243", Level: &level,
		Dispatch: func(DispatchRequest, func(json.RawMessage)) (string, func(), error) {
			dispatched = true
			return "m", func() {}, nil
		}}, func(s *Server) {
		s.cred = func(*net.UnixConn) (uint32, uint32, error) { return 4242, 4243, nil }
	})
	ctx := t.Context()
	if _, err := c.Status(ctx); err != nil {
		t.Errorf("Status as a group member: %v", err)
	}
	if _, err := c.LogLevel(ctx); err != nil {
		t.Errorf("LogLevel as a group member: %v", err)
	}
	if _, err := c.SetLogLevel(ctx, "debug"); err == nil || !strings.Contains(err.Error(), "may only read") {
		t.Errorf("SetLogLevel as a group member: %v, want a refusal", err)
	}
	if level.Level() != slog.LevelInfo {
		t.Errorf("level = %v after a refused change", level.Level())
	}
	err := c.Dispatch(ctx, DispatchRequest{Directive: "echo"}, func(DispatchLine) {})
	if err == nil || !strings.Contains(err.Error(), "may only read") || dispatched {
		t.Errorf("Dispatch as a group member: %v (dispatched %v), want a refusal", err, dispatched)
	}
}

func TestAllowed(t *testing.T) {
	euid := uint32(os.Geteuid())
	tests := []struct {
		name      string
		gid       int
		uid, pgid uint32
		want      bool
	}{
		{name: "root", gid: -1, uid: 0, pgid: 0, want: true},
		{name: "own_user", gid: -1, uid: euid, pgid: 4242, want: true},
		{name: "other_user", gid: -1, uid: 4242, pgid: 4242, want: false},
		{name: "other_user_in_group", gid: 4243, uid: 4242, pgid: 4243, want: true},
		{name: "other_user_other_group", gid: 4243, uid: 4242, pgid: 4244, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.uid == 4242 && euid == 4242 {
				t.Skip("runs as uid 4242")
			}
			s := &Server{euid: int(euid), gid: tt.gid}
			if got := s.allowed(tt.uid, tt.pgid); got != tt.want {
				t.Errorf("allowed(uid %d, gid %d) = %v, want %v", tt.uid, tt.pgid, got, tt.want)
			}
		})
	}
}

func TestListenStale(t *testing.T) {
	dir := shortDir(t)
	path := filepath.Join(dir, "control.sock")

	t.Run("stale_socket_removed", func(t *testing.T) {
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		ln.SetUnlinkOnClose(false)
		ln.Close() // the file stays, nobody answers
		s, err := Listen(Config{Path: path})
		if err != nil {
			t.Fatalf("Listen over a stale socket: %v", err)
		}
		s.Close()
		s.Close() // idempotent
	})
	t.Run("live_socket_refused", func(t *testing.T) {
		startServer(t, Config{Path: path}, nil)
		_, err := Listen(Config{Path: path})
		if err == nil || !strings.Contains(err.Error(), "another yggd serves it") {
			t.Errorf("Listen while another server answers: %v, want refusal", err)
		}
	})
	t.Run("not_a_socket_refused", func(t *testing.T) {
		file := filepath.Join(dir, "file")
		os.WriteFile(file, nil, 0o600)
		_, err := Listen(Config{Path: file})
		if err == nil || !strings.Contains(err.Error(), "is not a socket") {
			t.Errorf("Listen on a regular file: %v, want refusal", err)
		}
	})
}

func TestNotRunning(t *testing.T) {
	c := Dial(filepath.Join(shortDir(t), "control.sock"))
	if _, err := c.Status(t.Context()); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Status with no socket: %v, want ErrNotRunning", err)
	}
}
