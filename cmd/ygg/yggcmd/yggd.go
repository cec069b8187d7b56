package yggcmd

// ygg's view of a running yggd, through its control socket
// (yggdrasil/control): where the socket is, and the connection and worker
// lines status and workers print.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/ygglab/yggdrasil/yggdrasil/build"
	"github.com/ygglab/yggdrasil/yggdrasil/control"
)

var configFlag = flagSpec{long: "config", arg: "FILE", complete: "file",
	help: "Find the control socket through yggd's configuration FILE (its control-socket or runtime-dir). Default: the file yggd reads, " +
		filepath.Join(build.SysconfDir, build.LongName, "config.toml") + ", when it exists."}

// controlSocket returns the path of yggd's control socket: control-socket
// of yggd's configuration (--config, else yggd's default file when it
// exists), else control.sock in its runtime directory (runtime-dir, else
// $RUNTIME_DIRECTORY, else /run/<longname>), as yggd computes it.
func (a *app) controlSocket(p *parsed) (string, error) {
	file := p.get("config")
	if file == "" {
		def := filepath.Join(build.SysconfDir, build.LongName, "config.toml")
		if _, err := os.Stat(def); err == nil {
			file = def
		}
	}
	var cfg struct {
		ControlSocket string `toml:"control-socket"`
		RuntimeDir    string `toml:"runtime-dir"`
	}
	if file != "" {
		if _, err := toml.DecodeFile(file, &cfg); err != nil {
			return "", fmt.Errorf("read config %s: %w", file, err)
		}
	}
	switch {
	case cfg.ControlSocket != "":
		return cfg.ControlSocket, nil
	case cfg.RuntimeDir != "":
		return filepath.Join(cfg.RuntimeDir, "control.sock"), nil
	}
	if dir, _, _ := strings.Cut(a.getenv("RUNTIME_DIRECTORY"), ":"); dir != "" {
		return filepath.Join(dir, "control.sock"), nil
	}
	return filepath.Join("/run", build.LongName, "control.sock"), nil
}

// yggdStatus asks yggd for its state; the error says why it could not.
func (a *app) yggdStatus(ctx context.Context, p *parsed) (string, *control.Status, error) {
	path, err := a.controlSocket(p)
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := control.Dial(path).Status(ctx)
	if err != nil {
		return path, nil, err
	}
	return path, &st, nil
}

// yggdHealthy says whether yggd is connected and none of its workers is
// failing.
func yggdHealthy(st *control.Status) bool {
	if st == nil || st.Connection.State != control.StateConnected {
		return false
	}
	for _, w := range st.Workers {
		if w.Failing() {
			return false
		}
	}
	return true
}

// connectionText says in words what yggd's connection does.
func connectionText(c control.Connection, now time.Time) string {
	var s string
	switch c.State {
	case control.StateConnected:
		s = fmt.Sprintf("connected to %s since %s", c.Broker, c.ConnectedSince.Local().Format(time.DateTime))
	case control.StateOffline:
		s = "offline: a disconnect command asked it; restart yggd to connect again"
	default:
		s = c.State
		if !c.NextRetry.IsZero() {
			s += fmt.Sprintf(", next attempt in %s", max(c.NextRetry.Sub(now), 0).Round(time.Second))
		}
	}
	if c.LastError != "" && c.State != control.StateConnected {
		s += " (last error: " + c.LastError + ")"
	}
	return s
}

// writeWorkers prints the worker table.
func writeWorkers(w io.Writer, ws []control.Worker) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "WORKER\tSTATE\tPID\tRESTARTS\tHANDLERS\tLAST EXIT\n")
	for _, x := range ws {
		name := x.Name
		if name == "" {
			name = "(unsupervised)"
		}
		pid := "-"
		if x.PID != 0 {
			pid = strconv.Itoa(x.PID)
		}
		handlers := strings.Join(x.Handlers, ",")
		if handlers == "" {
			handlers = "-"
		}
		if x.Detached {
			handlers += " (detached)"
		}
		last := "-"
		if x.LastExit != "" {
			last = x.LastExit + " at " + x.LastExitAt.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", name, x.State, pid, x.Restarts, handlers, last)
	}
	return tw.Flush()
}

func runWorkers(ctx context.Context, a *app, p *parsed) error {
	path, err := a.controlSocket(p)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ws, err := control.Dial(path).Workers(ctx)
	if err != nil {
		return err
	}
	if p.get("format") == "json" {
		b, _ := json.MarshalIndent(control.Workers{Version: control.Version, Workers: ws}, "", "  ")
		fmt.Fprintf(a.stdout, "%s\n", b)
	} else if err := writeWorkers(a.stdout, ws); err != nil {
		return err
	}
	for _, w := range ws {
		if w.Failing() {
			return errSilent
		}
	}
	return nil
}
