package control

// GET /metrics: the Status document and a few figures of yggd's process in
// the Prometheus text exposition format, version 0.0.4. It is written by
// hand: about twenty series whose figures already exist do not need the
// client library and its registry.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil/build"
)

// MetricsContentType is the Content-Type of GET /metrics.
const MetricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// Process is what GET /metrics reports of yggd's own process, as the
// Prometheus client library names it. A figure that could not be read is
// left out (its field is negative).
type Process struct {
	CPUSeconds    float64 // user and system time
	ResidentBytes float64
	VirtualBytes  float64
	OpenFDs       float64
	MaxFDs        float64
	StartTime     float64 // seconds since the epoch
}

// WriteMetrics writes st and p to w in the Prometheus text format.
func WriteMetrics(w io.Writer, st Status, p Process) error {
	m := &metricsWriter{w: bufio.NewWriter(w)}

	m.single("yggd_build_info", "gauge", "Always 1; the version label is yggd's release.", 1, "version", build.Version)

	m.single("yggd_connected", "gauge", "1 while yggd is connected to the broker, else 0.", boolValue(st.Connection.State == StateConnected))
	m.family("yggd_connection_state", "gauge", "1 for the state the connection is in, 0 for the others.")
	for _, s := range []string{StateConnecting, StateConnected, StateReconnecting, StateOffline, StateStopping} {
		m.sample("yggd_connection_state", boolValue(st.Connection.State == s), "state", s)
	}
	m.single("yggd_reconnects_total", "counter", "Connections to the broker made after the first one.", float64(st.Connection.Reconnects))

	m.single("yggd_messages_received_total", "counter", "Data messages received.", float64(st.Counters.Received))
	m.single("yggd_messages_delivered_total", "counter", "Data messages handed to a worker.", float64(st.Counters.Delivered))
	m.single("yggd_messages_duplicate_total", "counter", "Data messages dropped as redelivered.", float64(st.Counters.Duplicates))
	m.single("yggd_messages_rejected_total", "counter", "Data messages answered with a negative acknowledgement.", float64(st.Counters.Rejected))
	m.family("yggd_messages_rejected_by_code_total", "counter", "Data messages answered with a negative acknowledgement, by its code.")
	for _, code := range slices.Sorted(maps.Keys(st.Counters.RejectedByCode)) {
		m.sample("yggd_messages_rejected_by_code_total", float64(st.Counters.RejectedByCode[code]), "code", code)
	}
	m.single("yggd_answers_total", "counter", "Worker answers queued for the cloud.", float64(st.Counters.Answers))

	m.single("yggd_answer_queue_messages", "gauge", "Answers waiting for the broker.", float64(st.Queue.Answers))
	m.single("yggd_answer_queue_bytes", "gauge", "Bytes of the answers waiting for the broker.", float64(st.Queue.Bytes))
	m.single("yggd_answers_dropped_total", "counter", "Answers dropped past queue-max-count or queue-max-bytes.", float64(st.Queue.Dropped))

	m.family("yggd_worker_up", "gauge", "1 while the worker's process runs, else 0; worker is empty for handlers of processes yggd did not start.")
	for _, w := range st.Workers {
		m.sample("yggd_worker_up", boolValue(w.State == WorkerRunning), "worker", w.Name)
	}
	m.family("yggd_worker_restarts_total", "counter", "Restarts of the worker's process.")
	for _, w := range st.Workers {
		m.sample("yggd_worker_restarts_total", float64(w.Restarts), "worker", w.Name)
	}
	m.family("yggd_worker_handler", "gauge", "1 for each handler (directive) a worker's process registered.")
	for _, w := range st.Workers {
		for _, h := range w.Handlers {
			m.sample("yggd_worker_handler", 1, "worker", w.Name, "handler", h)
		}
	}

	if !st.Identity.NotAfter.IsZero() {
		m.family("yggd_certificate_expiry_timestamp_seconds", "gauge", "When the client certificate expires, in seconds since the epoch.")
		m.sample("yggd_certificate_expiry_timestamp_seconds", unixSeconds(st.Identity.NotAfter))
	}

	for _, x := range []struct {
		name, typ, help string
		v               float64
	}{
		{"process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", p.CPUSeconds},
		{"process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", p.ResidentBytes},
		{"process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", p.VirtualBytes},
		{"process_open_fds", "gauge", "Number of open file descriptors.", p.OpenFDs},
		{"process_max_fds", "gauge", "Maximum number of open file descriptors.", p.MaxFDs},
		{"process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", p.StartTime},
	} {
		if x.v >= 0 {
			m.family(x.name, x.typ, x.help)
			m.sample(x.name, x.v)
		}
	}
	if m.err != nil {
		return m.err
	}
	return m.w.Flush()
}

// metricsWriter writes families and samples; the first error sticks.
type metricsWriter struct {
	w   *bufio.Writer
	err error
}

func (m *metricsWriter) printf(format string, args ...any) {
	if m.err == nil {
		_, m.err = fmt.Fprintf(m.w, format, args...)
	}
}

// family writes the HELP and TYPE lines of a family, which come once and
// before its samples.
func (m *metricsWriter) family(name, typ, help string) {
	m.printf("# HELP %s %s\n# TYPE %s %s\n", name, escapeHelp(help), name, typ)
}

// single writes a family of one sample.
func (m *metricsWriter) single(name, typ, help string, v float64, labels ...string) {
	m.family(name, typ, help)
	m.sample(name, v, labels...)
}

// sample writes one sample; labels are name, value pairs.
func (m *metricsWriter) sample(name string, v float64, labels ...string) {
	var b strings.Builder
	b.WriteString(name)
	if len(labels) > 0 {
		b.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(labels[i])
			b.WriteString(`="`)
			b.WriteString(escapeLabel(labels[i+1]))
			b.WriteByte('"')
		}
		b.WriteByte('}')
	}
	m.printf("%s %s\n", b.String(), formatValue(v))
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// escapeHelp escapes a HELP text: backslash and line feed.
func escapeHelp(s string) string { return helpEscaper.Replace(s) }

// escapeLabel escapes a label value: backslash, double quote and line feed.
func escapeLabel(s string) string { return labelEscaper.Replace(s) }

// formatValue writes integers without an exponent, and the rest as Go
// parses them back.
func formatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case v == math.Trunc(v) && math.Abs(v) < 1<<53:
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	var b bytes.Buffer
	if err := WriteMetrics(&b, s.cfg.Status(), s.process()); err != nil {
		writeJSON(w, http.StatusInternalServerError, Error{"write metrics: " + err.Error()})
		return
	}
	w.Header().Set("Content-Type", MetricsContentType)
	w.Write(b.Bytes())
}

// userHZ is the unit of the times in /proc/<pid>/stat; Linux fixes it at
// 100 for user space whatever the kernel's own HZ.
const userHZ = 100

// readProcess reads this process's figures from /proc; what cannot be read
// is -1.
func readProcess() Process {
	p := Process{CPUSeconds: -1, ResidentBytes: -1, VirtualBytes: -1, OpenFDs: -1, MaxFDs: -1, StartTime: -1}
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		// The fields after the command name, which is in parentheses
		// and may hold spaces; f[0] is field 3 (state).
		if i := bytes.LastIndexByte(b, ')'); i >= 0 {
			f := strings.Fields(string(b[i+1:]))
			field := func(n int) (float64, bool) {
				if n-3 >= len(f) {
					return 0, false
				}
				v, err := strconv.ParseFloat(f[n-3], 64)
				return v, err == nil
			}
			utime, ok1 := field(14)
			stime, ok2 := field(15)
			if ok1 && ok2 {
				p.CPUSeconds = (utime + stime) / userHZ
			}
			if v, ok := field(23); ok {
				p.VirtualBytes = v
			}
			if v, ok := field(24); ok {
				p.ResidentBytes = v * float64(os.Getpagesize())
			}
			if v, ok := field(22); ok {
				if boot, ok := bootTime(); ok {
					p.StartTime = boot + v/userHZ
				}
			}
		}
	}
	if des, err := os.ReadDir("/proc/self/fd"); err == nil {
		p.OpenFDs = float64(len(des) - 1) // less the one ReadDir had open
	}
	if b, err := os.ReadFile("/proc/self/limits"); err == nil {
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					if v, err := strconv.ParseFloat(f[0], 64); err == nil {
						p.MaxFDs = v
					}
				}
			}
		}
	}
	return p
}

// bootTime returns btime of /proc/stat: when the system booted, in seconds
// since the epoch.
func bootTime() (float64, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "btime "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// ServeMetrics serves GET /metrics, and nothing else, on ln (yggd's
// metrics-listen, for scrapers that cannot use the UNIX socket) until ctx
// ends. Anyone who can reach ln may read the metrics: no peer check.
func (s *Server) ServeMetrics(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", s.metrics)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      30 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics-listen %s: %w", ln.Addr(), err)
	}
	return nil
}
