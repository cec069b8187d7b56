package content

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func start(t *testing.T, s *Server) *Server {
	t.Helper()
	s.Logger = slog.New(slog.DiscardHandler)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func get(t *testing.T, url string) (int, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestServeDirAndPut(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.json"), []byte(`{"from":"dir"}`), 0o644)
	s := start(t, &Server{Dir: dir})
	url := s.Put("/b/c", []byte("from put"))
	if url != s.URL()+"/b/c" {
		t.Errorf("Put URL = %q", url)
	}
	tests := []struct {
		name, path string
		status     int
		body       string
	}{
		{"dir", "/a.json", 200, `{"from":"dir"}`},
		{"put", "/b/c", 200, "from put"},
		{"missing", "/nope", 404, "not found\n"},
		{"escape", "/../../etc/passwd", 404, "not found\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, err := get(t, s.URL()+tt.path)
			if err != nil || status != tt.status || body != tt.body {
				t.Errorf("GET %s = %d %q (%v), want %d %q", tt.path, status, body, err, tt.status, tt.body)
			}
		})
	}
}

func TestZeroValueAndPosts(t *testing.T) {
	s := start(t, &Server{})
	resp, err := http.Post(s.URL()+"/reply?x=1", "application/json", strings.NewReader(`{"ok":true}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("POST status = %d", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	posts, err := s.AwaitPosts(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	p := posts[0]
	if p.Method != "POST" || p.Path != "/reply?x=1" || string(p.Body) != `{"ok":true}` || p.Header.Get("Content-Type") != "application/json" {
		t.Errorf("post = %+v", p)
	}
	if !strings.HasPrefix(p.String(), "POST /reply?x=1\n") || !strings.Contains(p.String(), "Content-Type: application/json\n") ||
		!strings.HasSuffix(p.String(), "\n\n{\"ok\":true}\n") {
		t.Errorf("post printed as %q", p.String())
	}
	short, cancel2 := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel2()
	if _, err := s.AwaitPosts(short, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("AwaitPosts(2) with one post: err = %v", err)
	}
}

func TestModes(t *testing.T) {
	s := start(t, &Server{Stall: 200 * time.Millisecond, TrickleInterval: 20 * time.Millisecond, LargeSize: 1 << 20})
	url := s.Put("/p", []byte("abcde"))
	tests := []struct {
		mode      Mode
		status    int
		body      string
		minTime   time.Duration
		wantError bool
	}{
		{mode: ModeOK, status: 200, body: "abcde"},
		{mode: ModeNotFound, status: 404},
		{mode: ModeError, status: 500},
		{mode: ModeSlow, status: 200, body: "abcde", minTime: 200 * time.Millisecond},
		{mode: ModeTrickle, status: 200, body: "abcde", minTime: 80 * time.Millisecond},
		{mode: ModeRedirectLoop, wantError: true},
		{mode: ModeLarge, status: 200},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			s.SetMode(tt.mode)
			start := time.Now()
			status, body, err := get(t, url)
			if tt.wantError {
				if err == nil || !strings.Contains(err.Error(), "redirects") {
					t.Errorf("GET = %d, %v; want a redirect error", status, err)
				}
				return
			}
			if err != nil || status != tt.status {
				t.Fatalf("GET = %d (%v), want %d", status, err, tt.status)
			}
			if tt.body != "" && body != tt.body {
				t.Errorf("body = %q, want %q", body, tt.body)
			}
			if tt.mode == ModeLarge && len(body) != 1<<20 {
				t.Errorf("large body has %d bytes, want %d", len(body), 1<<20)
			}
			if d := time.Since(start); d < tt.minTime {
				t.Errorf("answered after %v, want no sooner than %v", d, tt.minTime)
			}
		})
	}
	// A POST is recorded even when the answer is an error.
	s.SetMode(ModeError)
	resp, err := http.Post(url, "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 || len(s.Posts()) != 1 {
		t.Errorf("POST in 500 mode = %d with %d posts recorded", resp.StatusCode, len(s.Posts()))
	}
}

func TestCloseEndsStall(t *testing.T) {
	s := start(t, &Server{Stall: time.Hour})
	s.SetMode(ModeSlow)
	done := make(chan error, 1)
	go func() {
		resp, err := http.Post(s.URL()+"/p", "text/plain", strings.NewReader("x"))
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	// A POST is recorded before the stall: once recorded, it is stalled.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := s.AwaitPosts(ctx, 1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a stalled request outlived Close")
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range Modes {
		if got, err := ParseMode(string(m)); err != nil || got != m {
			t.Errorf("ParseMode(%q) = %q, %v", m, got, err)
		}
	}
	if _, err := ParseMode("nope"); err == nil {
		t.Error("ParseMode(nope) succeeded")
	}
}
