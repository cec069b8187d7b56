//go:build linux

package supervisor

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// TestWarnsUnregistered runs a worker whose processes never exit on their
// own, in fake time, and checks that a process that has not registered
// LateWindow after its start is logged at warn, once, and one that has
// registered is not.
func TestWarnsUnregistered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const window = 10 * time.Second
		rec, log := newRecorder(t)
		s := New(Config{Dir: "/nonexistent", LateWindow: window, Log: log})
		var procs []*fakeProc
		s.spawn = func(ctx context.Context, name, path string, env []string) (process, error) {
			p := &fakeProc{ctx: ctx, id: 1000 + len(procs), exit: make(chan struct{})}
			procs = append(procs, p)
			return p, nil
		}
		_, stop := superviseWorker(t, s, "mute-worker")
		warned := func() []string {
			var pids []string
			for _, r := range rec.find(msgUnregistered, "worker", "mute-worker") {
				if r.level != slog.LevelWarn || r.attrs["after"] != window.String() || r.attrs["fix"] == "" {
					t.Errorf("logged as %v %v, want WARN with after=%s and a fix", r.level, r.attrs, window)
				}
				pids = append(pids, r.attrs["pid"])
			}
			return pids
		}
		step := func(what string, want ...string) {
			t.Helper()
			synctest.Wait()
			if got := warned(); !slices.Equal(want, got) {
				t.Errorf("%s: warnings for pids %v, want %v", what, got, want)
			}
		}

		step("just started")
		time.Sleep(window - 1)
		step("just inside the window")
		time.Sleep(1)
		step("window over, not registered", "1000")
		time.Sleep(10 * window)
		step("long after: said once", "1000")

		// Restarted: a new process, a new window; this one registers.
		close(procs[0].exit)
		time.Sleep(DefaultBackoffMin)
		synctest.Wait()
		s.Registered("mute-worker")
		time.Sleep(2 * window)
		step("second process registered", "1000")

		// The third exits before its window ends: nothing to say, even
		// once its window would have ended (the fourth's has not).
		close(procs[1].exit)
		time.Sleep(2 * DefaultBackoffMin)
		synctest.Wait()
		if len(procs) != 3 {
			t.Fatalf("%d processes started, want 3", len(procs))
		}
		time.Sleep(window / 2)
		close(procs[2].exit)
		time.Sleep(window)
		step("third process exited inside its window", "1000")

		// The fourth never registers.
		if len(procs) != 4 {
			t.Fatalf("%d processes started, want 4", len(procs))
		}
		time.Sleep(window)
		step("fourth process, not registered", "1000", "1003")
		stop()
	})
}
