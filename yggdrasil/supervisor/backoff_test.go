//go:build linux

package supervisor

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

const s1 = time.Second

func TestBackoffNext(t *testing.T) {
	def := Backoff{}
	tests := []struct {
		name      string
		b         Backoff
		prev, ran time.Duration
		want      time.Duration
	}{
		{"first_exit", def, 0, 0, 1 * s1},
		{"first_exit_after_long_run", def, 0, time.Hour, 1 * s1},
		{"doubles", def, 1 * s1, 0, 2 * s1},
		{"doubles_again", def, 2 * s1, 10 * s1, 4 * s1},
		{"doubles_below_cap", def, 8 * s1, 0, 16 * s1},
		{"capped", def, 16 * s1, 0, 30 * s1},
		{"stays_capped", def, 30 * s1, 59 * s1, 30 * s1},
		{"healthy_resets", def, 30 * s1, 60 * s1, 1 * s1},
		{"just_short_of_healthy", def, 4 * s1, 60*s1 - 1, 8 * s1},
		{"custom", Backoff{Min: 10 * time.Millisecond, Max: 25 * time.Millisecond, HealthyAfter: s1}, 10 * time.Millisecond, 0, 20 * time.Millisecond},
		{"custom_capped", Backoff{Min: 10 * time.Millisecond, Max: 25 * time.Millisecond, HealthyAfter: s1}, 20 * time.Millisecond, 0, 25 * time.Millisecond},
		{"custom_healthy", Backoff{Min: 10 * time.Millisecond, Max: 25 * time.Millisecond, HealthyAfter: s1}, 25 * time.Millisecond, s1, 10 * time.Millisecond},
		{"max_below_min", Backoff{Min: 5 * s1, Max: 2 * s1}, 5 * s1, 0, 5 * s1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.b.Next(tt.prev, tt.ran); got != tt.want {
				t.Errorf("Next(%v, %v) = %v, want %v", tt.prev, tt.ran, got, tt.want)
			}
		})
	}
}

var errFakeExit = errors.New("exit status 1")

// fakeProc is a process that exits at once, after runFor, or (if exit is
// not nil) when exit is closed; it is stopped when ctx is done. It lives in
// synctest's fake time.
type fakeProc struct {
	ctx    context.Context
	id     int
	runFor time.Duration
	exit   chan struct{}
}

func (p *fakeProc) pid() int { return p.id }

func (p *fakeProc) wait() (string, error) {
	var after <-chan time.Time
	switch {
	case p.exit != nil:
	case p.runFor > 0:
		after = time.After(p.runFor)
	default:
		return "exit status 1", errFakeExit
	}
	select {
	case <-after:
		return "exit status 1", errFakeExit
	case <-p.exit:
		return "exit status 1", errFakeExit
	case <-p.ctx.Done():
		return "signal: terminated", errors.New("signal: terminated")
	}
}

// fakeSpawner starts fakeProcs and records when.
type fakeSpawner struct {
	t0     time.Time
	runFor []time.Duration // by start; -1: the start fails; past the end: exit at once
	mu     sync.Mutex
	starts []time.Duration // offsets from t0 of each start attempt
	procs  []*fakeProc
}

var errFakeStart = errors.New("fork/exec: text file busy")

func (f *fakeSpawner) spawn(ctx context.Context, name, path string, env []string) (process, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.starts)
	f.starts = append(f.starts, time.Since(f.t0))
	var d time.Duration
	if n < len(f.runFor) {
		d = f.runFor[n]
	}
	if d < 0 {
		return nil, errFakeStart
	}
	p := &fakeProc{ctx: ctx, id: 1000 + n, runFor: d}
	f.procs = append(f.procs, p)
	return p, nil
}

func TestSuperviseSchedule(t *testing.T) {
	tests := []struct {
		name         string
		runFor       []time.Duration
		until        time.Duration
		wantStarts   []time.Duration
		wantFailures int
	}{
		{
			name:       "crash_at_once_forever",
			until:      200 * s1,
			wantStarts: []time.Duration{0, 1 * s1, 3 * s1, 7 * s1, 15 * s1, 31 * s1, 61 * s1, 91 * s1, 121 * s1, 151 * s1, 181 * s1},
			// The last exit, at 181 s, is the 11th quick one.
			wantFailures: 11,
		},
		{
			name:   "healthy_run_resets",
			runFor: []time.Duration{0, 0, 0, 70 * s1},
			until:  90 * s1,
			// 7 s: runs 70 s, exits at 77 s, back to 1 s, then 2 s, 4 s.
			wantStarts:   []time.Duration{0, 1 * s1, 3 * s1, 7 * s1, 78 * s1, 80 * s1, 84 * s1},
			wantFailures: 3,
		},
		{
			name:   "slow_crashes_still_back_off",
			runFor: []time.Duration{10 * s1, 10 * s1, 10 * s1, 10 * s1, 10 * s1},
			until:  80 * s1,
			// Each run is 10 s (< 60 s): delays 1, 2, 4, 8 s between them.
			wantStarts:   []time.Duration{0, 11 * s1, 23 * s1, 37 * s1, 55 * s1},
			wantFailures: 5,
		},
		{
			name:         "failed_starts_back_off",
			runFor:       []time.Duration{-1, -1, -1, 100 * s1},
			until:        50 * s1,
			wantStarts:   []time.Duration{0, 1 * s1, 3 * s1, 7 * s1},
			wantFailures: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var exits []int
				s := New(Config{Dir: "/nonexistent", OnExit: func(name string, pid int) {
					if name != "crash-worker" {
						t.Errorf("OnExit name = %q, want crash-worker", name)
					}
					exits = append(exits, pid)
				}})
				f := &fakeSpawner{t0: time.Now(), runFor: tt.runFor}
				s.spawn = f.spawn
				_, stop := superviseWorker(t, s, "crash-worker")
				time.Sleep(tt.until)
				synctest.Wait()

				if diff := cmp.Diff(tt.wantStarts, f.starts); diff != "" {
					t.Errorf("start times (-want +got):\n%s", diff)
				}
				st := s.Status()[0]
				if st.Failures != tt.wantFailures {
					t.Errorf("Failures = %d, want %d", st.Failures, tt.wantFailures)
				}
				if st.Starts != len(f.procs) {
					t.Errorf("Starts = %d, want %d", st.Starts, len(f.procs))
				}
				if st.State == StateRestarting {
					if st.NextStart.IsZero() || !st.NextStart.After(time.Now()) {
						t.Errorf("NextStart = %v, want after now (%v)", st.NextStart, time.Now())
					}
					if st.LastErr == nil {
						t.Errorf("LastErr = nil while failing")
					}
				}
				// Every process that has ended was reported, with its pid.
				var wantExits []int
				for _, p := range f.procs {
					end := f.starts[p.id-1000] + p.runFor
					if end <= tt.until {
						wantExits = append(wantExits, p.id)
					}
				}
				if diff := cmp.Diff(wantExits, exits); diff != "" {
					t.Errorf("OnExit pids (-want +got):\n%s", diff)
				}

				stop()
				if st := s.Status()[0]; st.State != StateStopped || st.PID != 0 {
					t.Errorf("after cancel: state %v pid %d, want stopped pid 0", st.State, st.PID)
				}
			})
		})
	}
}

func TestSuperviseCrashLoopStatus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{Dir: "/nonexistent"})
		f := &fakeSpawner{t0: time.Now()}
		s.spawn = f.spawn
		w := &worker{name: "crash-worker", path: "/nonexistent/crash-worker"}
		s.workers[w.name] = w
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go s.supervise(ctx, w)

		time.Sleep(100 * s1) // starts at 0, 1, 3, 7, 15, 31, 61, 91
		synctest.Wait()
		got := s.Status()[0]
		want := WorkerStatus{
			Name:       "crash-worker",
			Path:       "/nonexistent/crash-worker",
			State:      StateRestarting,
			Starts:     8,
			Failures:   8,
			LastExit:   "exit status 1",
			LastExitAt: f.t0.Add(91 * s1),
			LastErr:    errFakeExit,
			NextStart:  f.t0.Add(121 * s1),
		}
		if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b error) bool { return errors.Is(a, b) })); diff != "" {
			t.Errorf("status (-want +got):\n%s", diff)
		}
	})
}

func TestStarting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{Dir: "/nonexistent"})
		if !s.Starting() {
			t.Errorf("before Run has scanned: Starting() = false, want true")
		}
		s.scanned = true
		if s.Starting() {
			t.Errorf("no workers: Starting() = true, want false")
		}

		f := &fakeSpawner{}
		s.spawn = func(ctx context.Context, name, path string, env []string) (process, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			p := &fakeProc{ctx: ctx, id: 1000 + len(f.procs), exit: make(chan struct{})}
			f.procs = append(f.procs, p)
			return p, nil
		}
		current := func() *fakeProc {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.procs[len(f.procs)-1]
		}
		w := &worker{name: "late-worker", path: "/nonexistent/late-worker"}
		s.workers[w.name] = w
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go s.supervise(ctx, w)
		synctest.Wait()

		step := func(what string, want bool) {
			t.Helper()
			synctest.Wait()
			if got := s.Starting(); got != want {
				t.Errorf("%s: Starting() = %v, want %v (status %+v)", what, got, want, s.Status())
			}
		}
		step("just started, not registered", true)
		time.Sleep(DefaultLateWindow - 1)
		step("not registered, within the late window", true)
		time.Sleep(1)
		step("not registered, late window over", false)

		s.Registered("late-worker")
		step("registered: may register more handlers", true)
		time.Sleep(DefaultRegisterSettle)
		step("registered, settled", false)
		if !s.Status()[0].Registered {
			t.Errorf("status: Registered = false after Registered")
		}

		close(current().exit)
		step("restarting after a registered process", true)
		s.Registered("late-worker") // no process: ignored
		time.Sleep(DefaultBackoffMin)
		step("restarted, not registered yet", true)
		if s.Status()[0].Registered {
			t.Errorf("status: Registered = true for a new process")
		}

		close(current().exit)
		step("restarting after a process that never registered", false)
		time.Sleep(2 * DefaultBackoffMin)
		step("restarted again", true)

		s.Registered("no-such-worker") // harmless
		cancel()
		step("stopped", false)
	})
}
