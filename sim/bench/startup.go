package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ygglab/yggdrasil/yggdrasil"
)

// StartupGoal is the median time from exec to the online status that
// yggd must stay under (the alternative to 1.2 × yggd 0.1.5).
const StartupGoal = 40 * time.Millisecond

// Startup measures how long a host program takes from exec to its
// retained online status on the broker: the start-up an admin waits for
// after "systemctl start". Builds are started in turn (interleaved, so
// that a busy moment of the machine falls on all of them), N times each,
// each time with a new client id, an empty worker directory and fresh
// runtime and state directories, and stopped with SIGTERM once online.
type Startup struct {
	Broker string
	Builds map[string]string // name → directory holding its yggd
	N      int
	Log    io.Writer // a line per start; nil: none
}

// StartupResult is one build's start-up times, sorted.
type StartupResult struct {
	Name  string
	Times []time.Duration
}

// Run runs the starts and returns the results in the order of the names.
func (s *Startup) Run(ctx context.Context) ([]StartupResult, error) {
	names := make([]string, 0, len(s.Builds))
	for name := range s.Builds {
		names = append(names, name)
	}
	slices.Sort(names)
	work, err := os.MkdirTemp("", "yggstartup-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	online := make(chan string, 16) // client ids whose online status arrived
	c, err := connect(ctx, s.Broker, func(_ paho.Client, m paho.Message) {
		if strings.Contains(string(m.Payload()), `"state":"online"`) {
			online <- strings.Split(m.Topic(), "/")[1]
		}
	}, yggdrasil.Topic(yggdrasil.DefaultTopicPrefix, "+", yggdrasil.KindControl, yggdrasil.DirOut))
	if err != nil {
		return nil, err
	}
	defer c.Disconnect(0)

	times := map[string][]time.Duration{}
	for i := range s.N {
		for _, name := range names {
			d, err := s.once(ctx, online, filepath.Join(work, fmt.Sprint(i, "-", name)), filepath.Join(s.Builds[name], "yggd"))
			if err != nil {
				return nil, fmt.Errorf("start-up of %s: %w", name, err)
			}
			times[name] = append(times[name], d)
			if s.Log != nil {
				fmt.Fprintf(s.Log, "start %2d %-8s %v\n", i+1, name, d.Round(10*time.Microsecond))
			}
		}
	}
	var out []StartupResult
	for _, name := range names {
		t := times[name]
		slices.Sort(t)
		out = append(out, StartupResult{Name: name, Times: t})
	}
	return out, nil
}

// once starts yggd in dir, waits for its online status, stops it.
func (s *Startup) once(ctx context.Context, online <-chan string, dir, yggd string) (time.Duration, error) {
	for _, d := range []string{"workers", "run", "state"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return 0, err
		}
	}
	host := "startup-" + yggdrasil.NewMessageID()[:8]
	cmd := exec.Command(yggd, "--broker", s.Broker, "--client-id", host, "--worker-dir", filepath.Join(dir, "workers"),
		"--runtime-dir", filepath.Join(dir, "run"), "--state-dir", filepath.Join(dir, "state"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case id := <-online:
			if id == host {
				return time.Since(start), nil
			}
		case <-timeout:
			return 0, fmt.Errorf("no online status from %s within 10s", host)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// ReportStartup writes a Markdown table of the results: median, the
// spread (min to p90) and the goal.
func ReportStartup(w io.Writer, results []StartupResult) bool {
	fmt.Fprintln(w, "| build | starts | median | min | p90 | max |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	met := true
	for _, r := range results {
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s |\n", r.Name, len(r.Times), ms(percentile(r.Times, 0.5)),
			ms(r.Times[0]), ms(percentile(r.Times, 0.9)), ms(r.Times[len(r.Times)-1]))
	}
	for _, r := range results {
		if r.Name != "yggd" {
			continue
		}
		p50 := percentile(r.Times, 0.5)
		ok := p50 <= StartupGoal
		met = met && ok
		fmt.Fprintf(w, "\n| goal | target | measured (median) | met |\n|---|---|---|---|\n| exec → online status | ≤ %s | %s | %s |\n",
			ms(StartupGoal), ms(p50), yesNo(ok))
	}
	return met
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}
