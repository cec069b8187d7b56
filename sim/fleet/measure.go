package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// Measure measures a sim's API with a fleet connected, from outside, as
// a cloud-side client would: how many hosts the cloud-connector listing
// counts online, how long a listing takes, and whether every host answers
// a ping.
type Measure struct {
	API       string   // base URL of the sim's API (http://host:port)
	Hosts     []string // client ids to ping
	ListCalls int      // GET /v2/connections calls, one after another; default 200
	// PingConcurrency is how many pings are in flight at once; default 32.
	PingConcurrency int
	PingTimeout     time.Duration // for each ping; default 30 s
	Client          *http.Client  // default a client with a 60 s timeout
}

// Figures are what Measure found.
type Figures struct {
	Online           int           `json:"online"` // the listing's count
	ListCalls        int           `json:"list_calls"`
	ListP50, ListP99 time.Duration `json:"-"`
	ListP50MS        float64       `json:"list_p50_ms"`
	ListP99MS        float64       `json:"list_p99_ms"`
	Pinged           int           `json:"pinged"`
	Answered         int           `json:"answered"`
	PingTime         time.Duration `json:"-"` // from the first ping sent to the last answer
	PingSeconds      float64       `json:"ping_seconds"`
	PingP50, PingP99 time.Duration `json:"-"` // one ping's round trip through the API
	PingP50MS        float64       `json:"ping_p50_ms"`
	PingP99MS        float64       `json:"ping_p99_ms"`
	Failures         []string      `json:"failures,omitempty"` // the first few pings that failed, and why
}

// maxFailures is how many ping failures Figures keeps.
const maxFailures = 10

func (m *Measure) defaults() {
	if m.ListCalls <= 0 {
		m.ListCalls = 200
	}
	if m.PingConcurrency <= 0 {
		m.PingConcurrency = 32
	}
	if m.PingTimeout <= 0 {
		m.PingTimeout = 30 * time.Second
	}
	if m.Client == nil {
		m.Client = &http.Client{Timeout: 60 * time.Second}
	}
}

// Online returns the number of online hosts as GET /v2/connections
// counts them.
func (m *Measure) Online(ctx context.Context) (int, error) {
	m.defaults()
	var page struct {
		Meta struct {
			Count int `json:"count"`
		} `json:"meta"`
	}
	if err := m.get(ctx, "/api/cloud-connector/v2/connections?limit=1", &page); err != nil {
		return 0, err
	}
	return page.Meta.Count, nil
}

// Run lists the connections ListCalls times, then pings every host.
func (m *Measure) Run(ctx context.Context) (Figures, error) {
	m.defaults()
	var f Figures
	var err error
	if f.Online, err = m.Online(ctx); err != nil {
		return f, err
	}
	lat := make([]time.Duration, 0, m.ListCalls)
	for range m.ListCalls {
		start := time.Now()
		if err := m.get(ctx, "/api/cloud-connector/v2/connections", nil); err != nil {
			return f, err
		}
		lat = append(lat, time.Since(start))
	}
	f.ListCalls = len(lat)
	f.ListP50, f.ListP99 = percentiles(lat)
	f.ListP50MS, f.ListP99MS = ms(f.ListP50), ms(f.ListP99)

	var mu sync.Mutex
	var rtts []time.Duration
	work := make(chan string)
	var wg sync.WaitGroup
	start := time.Now()
	for range m.PingConcurrency {
		wg.Go(func() {
			for id := range work {
				t0 := time.Now()
				err := m.ping(ctx, id)
				d := time.Since(t0)
				mu.Lock()
				f.Pinged++
				if err == nil {
					f.Answered++
					rtts = append(rtts, d)
				} else if len(f.Failures) < maxFailures {
					f.Failures = append(f.Failures, fmt.Sprintf("%s: %v", id, err))
				}
				mu.Unlock()
			}
		})
	}
feed:
	for _, id := range m.Hosts {
		select {
		case work <- id:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	f.PingTime = time.Since(start)
	f.PingSeconds = f.PingTime.Seconds()
	f.PingP50, f.PingP99 = percentiles(rtts)
	f.PingP50MS, f.PingP99MS = ms(f.PingP50), ms(f.PingP99)
	return f, ctx.Err()
}

// ping pings host through the sim's ping endpoint, which waits for the
// pong.
func (m *Measure) ping(ctx context.Context, host string) error {
	u := fmt.Sprintf("%s/api/sim/hosts/%s/ping?timeout=%s", m.API, url.PathEscape(host), m.PingTimeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return err
	}
	return m.do(req, nil)
}

func (m *Measure) get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.API+path, nil)
	if err != nil {
		return err
	}
	return m.do(req, out)
}

// do sends req and decodes a JSON answer into out (nil: the body is read
// and dropped); an error status is an error with the body's text.
func (m *Measure) do(req *http.Request, out any) error {
	resp, err := m.Client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, body)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", req.Method, req.URL.Path, err)
	}
	return nil
}

// AwaitOnline polls Online until it reaches n, and returns how many were
// online when ctx ended otherwise.
func (m *Measure) AwaitOnline(ctx context.Context, n int, every time.Duration) error {
	last, lastErr := 0, error(nil)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		got, err := m.Online(ctx)
		if err == nil && got >= n {
			return nil
		}
		last, lastErr = got, err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d hosts online (last error: %v): %w", last, n, lastErr, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// percentiles returns the median and the 99th percentile of d (sorted in
// place).
func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return at(0.50), at(0.99)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
