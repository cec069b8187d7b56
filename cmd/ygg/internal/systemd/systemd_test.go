package systemd

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ygglab/yggdrasil/fakes/dbusd"
	fake "github.com/ygglab/yggdrasil/fakes/systemd"
)

// TestStartWaitsForActive starts a unit against the fake systemd, whose
// start job ends "done" while the unit is still activating, and checks
// that Start reports success only once the unit is active.
func TestStartWaitsForActive(t *testing.T) {
	const unit = "yggd.service"
	tests := []struct {
		name    string
		job     string        // the start job's result
		delay   time.Duration // then activating for so long
		state   string        // before becoming this
		timeout time.Duration // Client.ActiveTimeout
		wantErr string        // "" for success
	}{
		{name: "active_at_once", job: "done"},
		{name: "active_after_a_while", job: "done", delay: 300 * time.Millisecond, state: "active"},
		{name: "fails_after_start", job: "done", delay: 300 * time.Millisecond, state: "failed",
			wantErr: "yggd.service did not become active: it is failed; run 'systemctl status yggd.service' and 'journalctl -u yggd.service' to see why"},
		{name: "stops_after_start", job: "done", delay: 10 * time.Millisecond, state: "inactive",
			wantErr: "yggd.service did not become active: it is inactive;"},
		{name: "never_ready", job: "done", delay: time.Hour, state: "active", timeout: 500 * time.Millisecond,
			wantErr: "yggd.service did not become active within 500ms: it is still activating; run 'systemctl status yggd.service' and 'journalctl -u yggd.service'"},
		{name: "job_failed", job: "failed",
			wantErr: "start yggd.service: job failed; run 'systemctl status yggd.service' and 'journalctl -u yggd.service' to see why"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := dbusd.MustStart(t)
			s := &fake.Server{Bus: d.Addr(), JobResult: func(string, string) string { return tc.job }}
			if tc.state != "" {
				s.Settle = func(string) (time.Duration, string) { return tc.delay, tc.state }
			}
			if err := s.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			c := New(d.MustConnect(t))
			if tc.timeout > 0 {
				c.ActiveTimeout = tc.timeout
			}
			err := c.Start(t.Context(), unit)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Start() = %v, want success", err)
				}
				if st, _ := s.Unit(unit); st.ActiveState != "active" {
					t.Errorf("Start() succeeded with the unit %s", st.ActiveState)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Start() = %v, want an error that says %q", err, tc.wantErr)
			}
			var se *UnitStateError
			var je *JobError
			if !errors.As(err, &se) && !errors.As(err, &je) {
				t.Errorf("Start() = %T, want a *UnitStateError or a *JobError", err)
			}
		})
	}
}
