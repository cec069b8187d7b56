package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ygglab/yggdrasil/fakes/content"
	"github.com/ygglab/yggdrasil/yggdrasil"
)

// DetachedConfig turns a run into detached round trips: each message's
// content is the URL (a JSON string) of a payload of Config.Size bytes on
// a content server; the host fetches it and hands it to a detached worker
// (directive default "echo-detached"), which POSTs it back to the URL in
// the metadata key "return_url". The round trip ends when the POST
// arrives. The content server records every POST with its body, so keep
// Count × Size within memory.
type DetachedConfig struct {
	// Content is the server to use; nil starts one on 127.0.0.1:0.
	Content *content.Server
}

func runDetached(ctx context.Context, cfg Config) (*Result, error) {
	if len(cfg.Directives) == 1 && cfg.Directives[0] == "echo" {
		cfg.Directives = []string{"echo-detached"}
	}
	srv := cfg.Detached.Content
	if srv == nil {
		srv = &content.Server{Logger: slog.New(slog.DiscardHandler)}
		if err := srv.Start(); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer srv.Close()
	}
	r := &run{cfg: cfg, total: cfg.Warmup + cfg.Count, done: make(chan struct{}), tenth: make(chan struct{}),
		pings: map[string]time.Time{}}
	r.prefix = yggdrasil.NewMessageID()[:19] + "8000-"
	r.dataIn = yggdrasil.Topic(cfg.Prefix, cfg.Host, yggdrasil.KindData, yggdrasil.DirIn)
	r.dataOut = yggdrasil.Topic(cfg.Prefix, cfg.Host, yggdrasil.KindData, yggdrasil.DirOut)
	r.controlOut = yggdrasil.Topic(cfg.Prefix, cfg.Host, yggdrasil.KindControl, yggdrasil.DirOut)
	r.res = Result{Host: cfg.Host, Window: cfg.Window, Size: cfg.Size, Count: cfg.Count, Warmup: cfg.Warmup,
		Directive: cfg.Directives}

	body := make([]byte, cfg.Size)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	payloadURL := srv.Put("/bench/payload", body)
	returnBase := srv.URL() + "/bench/return/"

	online := make(chan struct{})
	var once sync.Once
	c, err := connect(ctx, cfg.Broker, func(_ paho.Client, m paho.Message) {
		switch m.Topic() {
		case r.dataOut:
			if len(m.Payload()) > 0 {
				r.mu.Lock()
				r.res.Nacked++ // a detached answer never comes on MQTT
				r.mu.Unlock()
			}
		case r.controlOut:
			if r.control(m.Payload()) {
				once.Do(func() { close(online) })
			}
		}
	}, r.dataOut, r.controlOut)
	if err != nil {
		return nil, err
	}
	defer c.Disconnect(100)
	select {
	case <-online:
	case <-time.After(cfg.Ready):
		return nil, fmt.Errorf("bench: wait for %s to be online with %v: timed out", cfg.Host, cfg.Directives)
	case <-ctx.Done():
		return nil, ctx.Err()
	}

	sentAt := make([]time.Time, r.total)
	answered := make([]bool, r.total)
	window := make(chan struct{}, cfg.Window)
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex
	var measure time.Time
	var proc *procWatch
	if cfg.Pid > 0 {
		proc = &procWatch{pid: cfg.Pid, logFile: cfg.LogFile}
	}
	wg.Go(func() {
		for i := range r.total {
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				return
			}
			id := string(r.appendID(nil, i))
			d := yggdrasil.Data{Type: yggdrasil.TypeData, MessageID: id, Version: yggdrasil.Version, Sent: time.Now(),
				Directive: cfg.Directives[i%len(cfg.Directives)],
				Metadata:  map[string]string{"return_url": returnBase + id},
				Content:   []byte(strconv.Quote(payloadURL))}
			b, _ := json.Marshal(d)
			if i == cfg.Warmup && proc != nil {
				proc.start()
			}
			mu.Lock()
			if i == cfg.Warmup {
				measure = time.Now()
			}
			sentAt[i] = time.Now()
			mu.Unlock()
			c.Publish(r.dataIn, 1, false, b)
		}
	})

	var lat []time.Duration
	seen := 0
	var last time.Time
	var runErr error
	for seen < r.total {
		actx, cancel := context.WithTimeout(ctx, cfg.Stall)
		posts, err := srv.AwaitPosts(actx, seen+1)
		cancel()
		if err != nil {
			r.res.Stalled = true
			runErr = fmt.Errorf("bench: stalled: no POST for %s", cfg.Stall)
			break
		}
		for _, p := range posts[seen:] {
			seen++
			i, ok := r.seq([]byte(strings.TrimPrefix(p.Path, "/bench/return/")))
			mu.Lock()
			switch {
			case !ok:
				r.res.Unexpected++
			case answered[i]:
				r.res.Duplicated++
			default:
				answered[i] = true
				last = p.Time
				if len(p.Body) != cfg.Size {
					r.res.BadContent++
				} else {
					r.verifyN.Add(1)
				}
				if i >= cfg.Warmup {
					lat = append(lat, p.Time.Sub(sentAt[i]))
				}
				<-window
			}
			mu.Unlock()
		}
	}
	var ps *ProcStats
	if proc != nil {
		ps = proc.finish()
	}
	stop()
	wg.Wait()
	res := r.res
	res.Answered = len(lat)
	for _, a := range answered {
		if !a {
			res.Lost++
		}
	}
	if !measure.IsZero() && !last.IsZero() {
		res.Elapsed = last.Sub(measure)
		res.MsgsPerSec = float64(len(lat)) / res.Elapsed.Seconds()
	}
	slices.Sort(lat)
	res.P50, res.P90, res.P99 = percentile(lat, 0.50), percentile(lat, 0.90), percentile(lat, 0.99)
	if len(lat) > 0 {
		res.Max = lat[len(lat)-1]
	}
	res.Verified = int(r.verifyN.Load())
	if ps != nil && len(lat) > 0 {
		n := time.Duration(len(lat))
		ps.CPUPerMsg, ps.WorkerPerMsg, ps.LogPerMsg = ps.CPU/n, ps.WorkerCPU/n, float64(ps.LogBytes)/float64(n)
		ps.SysPerMsg = ps.CPUSys / n
		res.Proc = ps
	}
	if runErr == nil && !res.OK() {
		runErr = fmt.Errorf("bench: %s", strings.Join(res.Problems(), ", "))
	}
	return &res, runErr
}
