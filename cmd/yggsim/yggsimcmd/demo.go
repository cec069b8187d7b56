package yggsimcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ygglab/yggdrasil/sim"
	"github.com/ygglab/yggdrasil/yggdrasil"
)

const demoUsage = `
Usage: yggsim demo [flags]

demo runs the whole system on this machine and shows it working: it starts
the simulated cloud (broker with TLS, API, content server), issues a host
certificate from the sim's CA, starts yggd with that certificate and the
echo worker in a fresh worker directory, then

  1. waits for the host to come online and shows its dispatchers,
  2. pings it and prints the round-trip time,
  3. sends an echo data message and prints the answer,
  4. sends a detached message (a URL to fetch) and prints what the worker
     POSTed back to the content server,

and keeps running so that you can try the other yggsim commands against it,
until Ctrl-C, which stops yggd (and its worker) and the sim cleanly.

yggd and echo-worker are looked up beside the yggsim executable, then on
$PATH ("make demo" builds all three into ./bin).
`

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", demoUsage, stdout, stderr)
	cfg := ServeConfig{}
	fs.StringVar(&cfg.MQTTAddr, "mqtt", defaultMQTT, "plain MQTT `address`")
	fs.StringVar(&cfg.TLSAddr, "mqtts", defaultMQTTS, "MQTT over TLS `address` (yggd connects here)")
	fs.StringVar(&cfg.APIAddr, "api", defaultAPIAddr, "HTTP API `address`")
	fs.StringVar(&cfg.ContentAddr, "content", defaultContent, "content server `address`")
	yggdPath := fs.String("yggd", "", "`path` of yggd (default: beside yggsim, then $PATH)")
	workerPath := fs.String("echo-worker", "", "`path` of echo-worker (default: beside yggsim, then $PATH)")
	once := fs.Bool("once", false, "stop after the round trips instead of waiting for Ctrl-C")
	pos, err := parse(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("%w: demo takes no arguments", ErrUsage)
	}
	if *yggdPath, err = findProgram(*yggdPath, "yggd"); err != nil {
		return err
	}
	if *workerPath, err = findProgram(*workerPath, "echo-worker"); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "yggsim-demo-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(dir)
	simLog, err := os.Create(filepath.Join(dir, "sim.log"))
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer simLog.Close()
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.Logger = slog.New(slog.NewTextHandler(simLog, nil))

	say := func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }
	st, err := StartServe(cfg)
	if err != nil {
		return fmt.Errorf("demo: start the sim: %w (is another yggsim running? try --mqtt, --mqtts, --api and --content with :0 ports)", err)
	}
	defer st.Close()
	a := st.Addresses()
	say("● simulated cloud: mqtt %s, mqtts %s, api %s, content %s", a.MQTT, a.MQTTS, a.API, a.Content)
	say("● web page: %s/", a.API)

	host := yggdrasil.NewMessageID()
	pki := filepath.Join(dir, "pki")
	if err := writeCert(st.Sim.CertificateAuthority(), host, pki); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	workers := filepath.Join(dir, "workers")
	if err := os.MkdirAll(workers, 0o755); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if err := copyExecutable(*workerPath, filepath.Join(workers, "echo-worker")); err != nil {
		return fmt.Errorf("demo: install the echo worker: %w", err)
	}
	say("● host %s: certificate from the sim's CA in %s", host, pki)

	logPath := filepath.Join(dir, "yggd.log")
	yggdLog, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer yggdLog.Close()
	yggd := exec.Command(*yggdPath,
		"--broker", a.MQTTS,
		"--cert-file", filepath.Join(pki, "cert.pem"),
		"--key-file", filepath.Join(pki, "key.pem"),
		"--ca-root", filepath.Join(pki, "ca.pem"),
		"--worker-dir", workers,
		"--runtime-dir", filepath.Join(dir, "run"),
		"--state-dir", filepath.Join(dir, "state"),
		"--config", os.DevNull)
	yggd.Stdout, yggd.Stderr = yggdLog, yggdLog
	if err := yggd.Start(); err != nil {
		return fmt.Errorf("demo: start yggd: %w", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- yggd.Wait() }()
	defer func() {
		yggd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-waited:
			say("● yggd stopped (%v)", exitText(err))
		case <-time.After(10 * time.Second):
			yggd.Process.Kill()
			<-waited
			say("● yggd did not stop within 10 s and was killed")
		}
	}()
	say("● yggd started (pid %d), logging to %s", yggd.Process.Pid, logPath)

	if err := demoRoundTrips(ctx, st, host, stdout); err != nil {
		select {
		case err := <-waited:
			waited <- err
			return fmt.Errorf("demo: yggd exited (%v); its log:\n%s", exitText(err), tail(logPath))
		default:
		}
		return fmt.Errorf("demo: %w; yggd's log:\n%s", err, tail(logPath))
	}
	if *once {
		return nil
	}
	say(`
Watch it and send messages in a browser: %[2]s/

Try it (another terminal):
  yggsim hosts
  yggsim ping %[1]s
  yggsim send %[1]s --directive echo --content '{"hello":"world"}' --wait
  yggsim watch
  curl -s %[2]s/api/cloud-connector/v2/connections/%[1]s/status

Press Ctrl-C to stop.`, host, a.API)
	select {
	case <-ctx.Done():
		say("\n● stopping")
	case err := <-waited:
		waited <- err
		return fmt.Errorf("demo: yggd exited (%v); its log:\n%s", exitText(err), tail(logPath))
	}
	return nil
}

// demoRoundTrips shows the host online, a ping, an echo and a detached
// round trip.
func demoRoundTrips(ctx context.Context, st *Stack, host string, stdout io.Writer) error {
	say := func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }
	s := st.Sim
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var dispatchers string
	for {
		// The echo worker registers its two handlers one after the other.
		if h, ok := s.Host(host); ok && h.Online() && strings.Contains(string(h.Dispatchers), `"echo"`) &&
			strings.Contains(string(h.Dispatchers), `"echo-detached"`) {
			dispatchers = string(h.Dispatchers)
			break
		}
		select {
		case <-wait.Done():
			return errors.New("the host did not come online with the echo worker's two handlers within 30 s")
		case <-time.After(50 * time.Millisecond):
		}
	}
	say("● 1. online, dispatchers %s", dispatchers)

	pong, rtt, err := s.Ping(wait, host)
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	var ev yggdrasil.Event
	json.Unmarshal(pong.Payload, &ev)
	say("● 2. ping → %s in %s", ev.Content, rtt.Round(10*time.Microsecond))

	content := json.RawMessage(`{"greeting":"hello from the cloud"}`)
	id, err := s.SendData(wait, host, "echo", map[string]string{"demo": "yes"}, content)
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	say("● 3. sent  data %s: directive echo, content %s", id, content)
	answer, err := s.AwaitAnswer(wait, id)
	if err != nil {
		return fmt.Errorf("await the echo answer: %w", err)
	}
	say("     answer %s", answer.Payload)

	if st.Content == nil {
		return nil
	}
	url := st.Content.Put("/demo/payload.txt", []byte("a payload too large for MQTT, fetched by yggd over HTTP\n"))
	ret := st.Content.URL() + "/demo/answers"
	quoted, _ := json.Marshal(url)
	before := len(st.Content.Posts())
	id, err = s.SendData(wait, host, "echo-detached", map[string]string{"return_url": ret}, quoted)
	if err != nil {
		return fmt.Errorf("send detached: %w", err)
	}
	say("● 4. sent  data %s: directive echo-detached, content %s", id, quoted)
	posts, err := st.Content.AwaitPosts(wait, before+1)
	if err != nil {
		return fmt.Errorf("await the detached answer: %w", err)
	}
	p := posts[before]
	say("     POST %s (%d bytes): %q", p.Path, len(p.Body), p.Body)
	return nil
}

// findProgram returns path if set, else name beside this executable, else
// name on $PATH.
func findProgram(path, name string) (string, error) {
	if path != "" {
		return path, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), name)
		if info, err := os.Stat(p); err == nil && info.Mode().IsRegular() {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("demo: %s not found beside yggsim or on $PATH (run \"make demo\", or give --%s)", name, name)
	}
	return p, nil
}

func copyExecutable(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}

// writeCert writes cert.pem, key.pem (mode 600) and ca.pem for host into
// dir, a certificate signed by ca.
func writeCert(ca *sim.CA, host, dir string) error {
	certPEM, keyPEM, err := ca.IssueClient(host)
	if err != nil {
		return fmt.Errorf("issue a certificate: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		perm os.FileMode
	}{{"cert.pem", certPEM, 0o644}, {"key.pem", keyPEM, 0o600}, {"ca.pem", ca.CertPEM(), 0o644}} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.perm); err != nil {
			return err
		}
	}
	return nil
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// tail returns the end of a log file, for error messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
