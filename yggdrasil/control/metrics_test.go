package control

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// getMetrics fetches GET /metrics and checks its Content-Type.
func getMetrics(t *testing.T, c *Client) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://yggd/metrics", nil)
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s: %s", resp.Status, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != MetricsContentType {
		t.Errorf("Content-Type %q, want %q", ct, MetricsContentType)
	}
	return string(b)
}

// parseMetrics parses text with Prometheus's own parser, with the classic
// (not UTF-8) names, and returns the families.
func parseMetrics(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse metrics: %v\n%s", err, text)
	}
	return fams
}

// samples flattens families into `name{l="v",...}` → value.
func samples(fams map[string]*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(ls)
			key := name
			if len(ls) > 0 {
				key += "{" + strings.Join(ls, ",") + "}"
			}
			var v float64
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			default:
				v = m.GetUntyped().GetValue()
			}
			out[key] = v
		}
	}
	return out
}

var fixedProcess = Process{CPUSeconds: 1.25, ResidentBytes: 4096, VirtualBytes: 8192, OpenFDs: 9, MaxFDs: 1024, StartTime: 1700000000.5}

func TestMetricsExposition(t *testing.T) {
	st := sample
	// A worker name that needs every escape of a label value.
	st.Workers = append(slices.Clone(st.Workers), Worker{Name: "odd\"na\\me\nx", Handlers: []string{"h"}, State: WorkerBackoff, Restarts: 3})
	st.Identity.NotAfter = time.Unix(1800000000, 0)
	_, c := startServer(t, Config{Status: func() Status { return st }}, func(s *Server) {
		s.process = func() Process { return fixedProcess }
	})
	text := getMetrics(t, c)
	fams := parseMetrics(t, text)

	wantTypes := map[string]dto.MetricType{
		"yggd_build_info":                           dto.MetricType_GAUGE,
		"yggd_connected":                            dto.MetricType_GAUGE,
		"yggd_connection_state":                     dto.MetricType_GAUGE,
		"yggd_reconnects_total":                     dto.MetricType_COUNTER,
		"yggd_messages_received_total":              dto.MetricType_COUNTER,
		"yggd_messages_delivered_total":             dto.MetricType_COUNTER,
		"yggd_messages_duplicate_total":             dto.MetricType_COUNTER,
		"yggd_messages_rejected_total":              dto.MetricType_COUNTER,
		"yggd_answers_total":                        dto.MetricType_COUNTER,
		"yggd_answer_queue_messages":                dto.MetricType_GAUGE,
		"yggd_answer_queue_bytes":                   dto.MetricType_GAUGE,
		"yggd_answers_dropped_total":                dto.MetricType_COUNTER,
		"yggd_worker_up":                            dto.MetricType_GAUGE,
		"yggd_worker_restarts_total":                dto.MetricType_COUNTER,
		"yggd_worker_handler":                       dto.MetricType_GAUGE,
		"yggd_certificate_expiry_timestamp_seconds": dto.MetricType_GAUGE,
		"process_cpu_seconds_total":                 dto.MetricType_COUNTER,
		"process_resident_memory_bytes":             dto.MetricType_GAUGE,
		"process_virtual_memory_bytes":              dto.MetricType_GAUGE,
		"process_open_fds":                          dto.MetricType_GAUGE,
		"process_max_fds":                           dto.MetricType_GAUGE,
		"process_start_time_seconds":                dto.MetricType_GAUGE,
	}
	gotTypes := map[string]dto.MetricType{}
	for name, f := range fams {
		gotTypes[name] = f.GetType()
		if f.GetHelp() == "" {
			t.Errorf("%s has no HELP", name)
		}
	}
	if diff := cmp.Diff(wantTypes, gotTypes); diff != "" {
		t.Errorf("families and types (-want +got):\n%s", diff)
	}
	// The parser accepts a family's samples split by another family's;
	// the format does not.
	seen := map[string]bool{}
	last := ""
	for line := range strings.Lines(text) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(strings.Fields(line)[0], "{")
		if name != last && seen[name] {
			t.Errorf("the samples of %s are not together", name)
		}
		seen[name], last = true, name
	}

	got := samples(fams)
	for key, want := range map[string]float64{
		`yggd_connected`: 1,
		`yggd_connection_state{state="connected"}`:                 1,
		`yggd_connection_state{state="reconnecting"}`:              0,
		`yggd_reconnects_total`:                                    2,
		`yggd_worker_up{worker="echo-worker"}`:                     1,
		`yggd_worker_up{worker="odd\"na\\me\nx"}`:                  0,
		`yggd_worker_restarts_total{worker="odd\"na\\me\nx"}`:      3,
		`yggd_worker_handler{handler="echo",worker="echo-worker"}`: 1,
		`yggd_certificate_expiry_timestamp_seconds`:                1800000000,
		`process_cpu_seconds_total`:                                1.25,
		`process_start_time_seconds`:                               1700000000.5,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", key, v, ok, want)
		}
	}
}

func TestMetricsCountersMove(t *testing.T) {
	var mu sync.Mutex
	st := sample
	_, c := startServer(t, Config{Status: func() Status {
		mu.Lock()
		defer mu.Unlock()
		return st
	}}, func(s *Server) { s.process = func() Process { return fixedProcess } })

	series := []string{
		"yggd_connected", "yggd_reconnects_total", "yggd_messages_received_total", "yggd_messages_delivered_total",
		"yggd_messages_duplicate_total", "yggd_messages_rejected_total", "yggd_answers_total",
		"yggd_answer_queue_messages", "yggd_answer_queue_bytes", "yggd_answers_dropped_total",
		`yggd_worker_up{worker="echo-worker"}`, `yggd_worker_restarts_total{worker="echo-worker"}`,
		`yggd_messages_rejected_by_code_total{code="unknown-directive"}`,
	}
	pick := func() map[string]float64 {
		all := samples(parseMetrics(t, getMetrics(t, c)))
		out := map[string]float64{}
		for _, s := range series {
			out[s] = all[s]
		}
		return out
	}

	before := pick()
	if diff := cmp.Diff(map[string]float64{
		"yggd_connected": 1, "yggd_reconnects_total": 2, "yggd_messages_received_total": 5, "yggd_messages_delivered_total": 4,
		"yggd_messages_duplicate_total": 1, "yggd_messages_rejected_total": 0, "yggd_answers_total": 4,
		"yggd_answer_queue_messages": 3, "yggd_answer_queue_bytes": 300, "yggd_answers_dropped_total": 1,
		`yggd_worker_up{worker="echo-worker"}`: 1, `yggd_worker_restarts_total{worker="echo-worker"}`: 0,
		`yggd_messages_rejected_by_code_total{code="unknown-directive"}`: 0, // absent: never used
	}, before); diff != "" {
		t.Errorf("first scrape (-want +got):\n%s", diff)
	}

	mu.Lock()
	st.Connection = Connection{State: StateReconnecting, Reconnects: 3}
	st.Counters = Counters{Received: 8, Delivered: 6, Duplicates: 2, Rejected: 1, Answers: 7,
		RejectedByCode: map[string]uint64{"unknown-directive": 1}}
	st.Queue = Queue{Answers: 0, Bytes: 0, Dropped: 4}
	st.Workers = []Worker{{Name: "echo-worker", State: WorkerBackoff, Restarts: 1}}
	mu.Unlock()

	after := pick()
	if diff := cmp.Diff(map[string]float64{
		"yggd_connected": 0, "yggd_reconnects_total": 3, "yggd_messages_received_total": 8, "yggd_messages_delivered_total": 6,
		"yggd_messages_duplicate_total": 2, "yggd_messages_rejected_total": 1, "yggd_answers_total": 7,
		"yggd_answer_queue_messages": 0, "yggd_answer_queue_bytes": 0, "yggd_answers_dropped_total": 4,
		`yggd_worker_up{worker="echo-worker"}`: 0, `yggd_worker_restarts_total{worker="echo-worker"}`: 1,
		`yggd_messages_rejected_by_code_total{code="unknown-directive"}`: 1,
	}, after); diff != "" {
		t.Errorf("second scrape (-want +got):\n%s", diff)
	}
}

func TestFormatValue(t *testing.T) {
	for _, tt := range []struct {
		v    float64
		want string
	}{
		{0, "0"}, {1234567890123, "1234567890123"}, {1.25, "1.25"}, {-3, "-3"}, {1e300, "1e+300"},
	} {
		if got := formatValue(tt.v); got != tt.want {
			t.Errorf("formatValue(%v) = %q, want %q", tt.v, got, tt.want)
		}
	}
}

func TestReadProcess(t *testing.T) {
	p := readProcess()
	if p.ResidentBytes <= 0 || p.VirtualBytes < p.ResidentBytes || p.OpenFDs < 3 || p.MaxFDs < p.OpenFDs || p.CPUSeconds < 0 {
		t.Errorf("readProcess() = %+v; want positive memory, at least 3 fds within the limit, and cpu time", p)
	}
	if now := float64(time.Now().Unix()); p.StartTime <= 0 || p.StartTime > now+1 {
		t.Errorf("start time %v, want in the past (now %v)", p.StartTime, now)
	}
}

func TestServeMetricsOverTCP(t *testing.T) {
	s, _ := startServer(t, Config{Status: func() Status { return sample }}, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeMetrics(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "\nyggd_connected 1\n") {
		t.Errorf("GET /metrics = %s:\n%s", resp.Status, body)
	}
	// Only the metrics: the rest of the API stays on the UNIX socket.
	for _, path := range []string{"/v1/status", "/v1/events"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s over TCP = %s, want 404", path, resp.Status)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ServeMetrics = %v after cancel, want nil", err)
	}
}
