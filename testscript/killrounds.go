package testscript

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	goscript "github.com/rogpeppe/go-internal/testscript"

	"github.com/ygglab/yggdrasil/yggdrasil"
)

// killCommands returns the crash test's command.
func killCommands() map[string]command {
	return map[string]command{
		"kill-rounds": {
			usage: "kill-rounds [-rounds n] [-rate n] [-drain d] host directive",
			run:   cmdKillRounds,
		},
	}
}

// cmdKillRounds publishes data messages for directive to host at a steady
// rate, from the moment the first yggd has subscribed (before that the
// broker keeps nothing for host), while it starts yggd and kills it
// (SIGKILL) at a random moment, rounds times; then it starts yggd once more, waits for the last answers
// and stops it cleanly. The worker must append the id of every message it
// runs to $YGG_WORKER_DIR/received. It prints what was sent, answered
// (answers and negative acknowledgements), lost and answered twice, and
// how many messages the worker ran twice; it fails on any of the last
// three. yggd runs with the script's environment; each run's log, at debug
// level, is $WORK/kill-<n>.log.
func cmdKillRounds(ts *goscript.TestScript, args []string) error {
	rounds, rate, drain := 20, 20, time.Minute
	args, err := flags("kill-rounds", args, func(fs *flag.FlagSet) {
		fs.IntVar(&rounds, "rounds", rounds, "")
		fs.IntVar(&rate, "rate", rate, "")
		fs.DurationVar(&drain, "drain", drain, "")
	})
	if err != nil {
		return err
	}
	if len(args) != 2 || rounds < 1 || rate < 1 || drain <= 0 {
		return ErrUsage
	}
	host, directive := args[0], args[1]
	s, err := simOf(ts)
	if err != nil {
		return err
	}
	seed := uint64(time.Now().UnixNano())
	rnd := rand.New(rand.NewPCG(seed, 0))
	run := newSoakRun(s)
	ctx, cancel := context.WithCancel(scriptContext(ts))
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { run.watch(ctx) })

	start := func(n int) (*exec.Cmd, error) {
		cmd := exec.Command("yggd", "--log-level", "debug", "--broker", ts.Getenv("YGG_BROKER"), "--client-id", host,
			"--worker-dir", ts.Getenv("YGG_WORKER_DIR"))
		cmd.Env = append(os.Environ(), "RUNTIME_DIRECTORY="+ts.Getenv("RUNTIME_DIRECTORY"),
			"STATE_DIRECTORY="+ts.Getenv("STATE_DIRECTORY"), "PATH="+ts.Getenv("PATH"))
		log, err := os.Create(filepath.Join(ts.Getenv("WORK"), fmt.Sprintf("kill-%d.log", n)))
		if err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = log, log
		err = cmd.Start()
		log.Close() // the child has its own descriptor
		return cmd, err
	}
	var problems []error
	pctx, stopPublishing := context.WithCancel(ctx)
	for n := 1; n <= rounds && ctx.Err() == nil; n++ {
		cmd, err := start(n)
		if err != nil {
			problems = append(problems, fmt.Errorf("start yggd: %w", err))
			break
		}
		if n == 1 {
			// The broker keeps messages for the host only once it has
			// subscribed; from then on its session outlives each yggd.
			actx, acancel := context.WithTimeout(ctx, 30*time.Second)
			err := awaitLogLine(actx, filepath.Join(ts.Getenv("WORK"), "kill-1.log"), "connected to broker")
			acancel()
			if err != nil {
				problems = append(problems, fmt.Errorf("the first yggd: %w", err))
			}
			wg.Go(func() { publishSteadily(pctx, run, host, directive, rate) })
		}
		select {
		case <-time.After(time.Duration(300+rnd.IntN(1200)) * time.Millisecond):
		case <-ctx.Done():
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
	stopPublishing()
	cmd, err := start(rounds + 1)
	if err != nil {
		problems = append(problems, fmt.Errorf("start yggd: %w", err))
	} else {
		dctx, dcancel := context.WithTimeout(ctx, drain)
		run.awaitAll(dctx)
		// Stop it only once it is up: before that, SIGINT is not yet
		// yggd's to handle.
		if err := awaitLogLine(dctx, filepath.Join(ts.Getenv("WORK"), fmt.Sprintf("kill-%d.log", rounds+1)), "msg=ready"); err != nil {
			problems = append(problems, fmt.Errorf("the last yggd: %w", err))
		}
		dcancel()
		cmd.Process.Signal(syscall.SIGINT)
		if err := cmd.Wait(); err != nil {
			problems = append(problems, fmt.Errorf("the last yggd: %w", err))
		}
	}
	cancel()
	wg.Wait()

	twice, err := repeatedLines(filepath.Join(ts.Getenv("YGG_WORKER_DIR"), "received"))
	if err != nil {
		problems = append(problems, err)
	}
	st := run.stats()
	w := ts.Stdout()
	fmt.Fprintf(w, "rounds=%d rate=%d/s seed=%d\n", rounds, rate, seed)
	fmt.Fprintf(w, "sent=%d answered=%d lost=%d duplicated=%d\n", st.sent, st.answered, st.lost, st.duplicated)
	fmt.Fprintf(w, "nacked=%d redelivered=%d unsent=%d run_twice=%d\n", st.nacked, st.redelivered, st.unsent, twice)
	if st.lost > 0 {
		problems = append(problems, fmt.Errorf("%d of %d messages never answered: %s", st.lost, st.sent, strings.Join(run.unanswered(5), " ")))
	}
	if st.duplicated > 0 {
		problems = append(problems, fmt.Errorf("%d messages answered twice: %s", st.duplicated, strings.Join(run.dupIDs, " ")))
	}
	if twice > 0 {
		problems = append(problems, fmt.Errorf("%d messages run twice by the worker", twice))
	}
	return errors.Join(problems...)
}

// publishSteadily publishes rate data messages a second for directive to
// host until ctx ends, noting each in run.
func publishSteadily(ctx context.Context, run *soakRun, host, directive string, rate int) {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	topic := yggdrasil.Topic(run.s.TopicPrefix(), host, yggdrasil.KindData, yggdrasil.DirIn)
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		d := yggdrasil.Data{Type: yggdrasil.TypeData, MessageID: yggdrasil.NewMessageID(), Version: yggdrasil.Version,
			Sent: time.Now(), Directive: directive, Content: json.RawMessage(strconv.Quote(fmt.Sprint("kill ", n)))}
		payload, _ := json.Marshal(d)
		run.mu.Lock()
		run.sentAt[d.MessageID] = d.Sent
		run.mu.Unlock()
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := run.s.Publish(pctx, topic, payload, 1, false)
		cancel()
		if err != nil {
			run.mu.Lock()
			delete(run.sentAt, d.MessageID)
			run.unsent++
			run.mu.Unlock()
		}
	}
}

// awaitLogLine polls the file at path until it holds text.
func awaitLogLine(ctx context.Context, path, text string) error {
	for {
		if b, err := os.ReadFile(path); err == nil && strings.Contains(string(b), text) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no %q in %s: %w", text, path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// repeatedLines counts the lines of the file at path that appeared before.
func repeatedLines(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("read what the worker ran: %w", err)
	}
	defer f.Close()
	seen := map[string]bool{}
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if seen[sc.Text()] {
			n++
		}
		seen[sc.Text()] = true
	}
	return n, sc.Err()
}
