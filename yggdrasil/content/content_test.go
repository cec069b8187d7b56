package content

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil"
)

func quoted(u string) []byte { return []byte(`"` + u + `"`) }

func TestFetch(t *testing.T) {
	var fails atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "payload") })
	mux.HandleFunc("/404", http.NotFound)
	mux.HandleFunc("/500-then-ok", func(w http.ResponseWriter, r *http.Request) {
		if fails.Add(1) <= 2 {
			http.Error(w, "busy", 500)
			return
		}
		io.WriteString(w, "late payload")
	})
	mux.HandleFunc("/500", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", 500) })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, strings.Repeat("x", 101)) })
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
	mux.HandleFunc("/stall", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	mux.HandleFunc("/trickle", func(w http.ResponseWriter, r *http.Request) {
		for {
			if _, err := io.WriteString(w, "x"); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	tests := []struct {
		name    string
		content []byte
		want    string
		code    yggdrasil.ErrorCode // "" when no DeliveryError is expected
		errText string
	}{
		{"ok", quoted(srv.URL + "/ok"), "payload", "", ""},
		{"retried_5xx", quoted(srv.URL + "/500-then-ok"), "late payload", "", ""},
		{"not_found", quoted(srv.URL + "/404"), "", "", "404"},
		{"server_error", quoted(srv.URL + "/500"), "", "", "500"},
		{"too_big", quoted(srv.URL + "/big"), "", "", "larger than the limit"},
		{"redirect_loop", quoted(srv.URL + "/loop"), "", "", "redirects"},
		{"stalled", quoted(srv.URL + "/stall"), "", "", "deadline"},
		{"trickle", quoted(srv.URL + "/trickle"), "", "", "deadline"},
		{"not_a_string", []byte(`{"url":"x"}`), "", yggdrasil.CodeMalformed, "JSON string"},
		{"not_a_url", quoted("::nope"), "", "", "parse URL"},
		{"relative_url", quoted("/relative"), "", "", "absolute"},
	}
	c := New(Config{MaxSize: 100, Timeout: 500 * time.Millisecond, Backoff: time.Millisecond})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body, err := c.Fetch(context.Background(), &yggdrasil.Data{MessageID: "m1", Directive: "d", Content: tc.content})
			if tc.errText == "" {
				if err != nil || string(body) != tc.want {
					t.Fatalf("Fetch = %q, %v; want %q", body, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.errText) {
				t.Fatalf("Fetch error = %v, want one that says %q", err, tc.errText)
			}
			var de *yggdrasil.DeliveryError
			if errors.As(err, &de) != (tc.code != "") || (de != nil && de.Code != tc.code) {
				t.Errorf("error %v: delivery code want %q", err, tc.code)
			}
		})
	}
}

func TestDataHostRewritesHost(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) }))
	defer srv.Close()
	for _, dataHost := range []string{strings.TrimPrefix(srv.URL, "http://"), srv.URL} {
		c := New(Config{DataHost: dataHost})
		body, err := c.Fetch(context.Background(), &yggdrasil.Data{Content: quoted("http://cloud.example.invalid/some/path")})
		if err != nil || string(body) != "/some/path" {
			t.Fatalf("data-host %s: Fetch = %q, %v; want the path served by the data host", dataHost, body, err)
		}
	}
}

func TestPost(t *testing.T) {
	type got struct {
		header http.Header
		body   string
	}
	var mu sync.Mutex
	var posts []got
	var calls, flaky atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.URL.Path == "/flaky" && flaky.Add(1) == 1 {
			http.Error(w, "busy", 503)
			return
		}
		if r.URL.Path == "/gone" {
			http.Error(w, "gone", 410)
			return
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		posts = append(posts, got{r.Header, string(b)})
		mu.Unlock()
	}))
	defer srv.Close()
	c := New(Config{Backoff: time.Millisecond})
	for _, path := range []string{"/flaky", "/gone"} {
		err := c.Post(context.Background(), &yggdrasil.Data{MessageID: "r1", Directive: srv.URL + path,
			Metadata: map[string]string{"Content-Type": " text/plain ", "X-Correlation": "c1"}, Content: []byte("answer")})
		if err != nil {
			t.Fatal(err)
		}
	}
	c.Close(context.Background())
	if len(posts) != 1 || posts[0].body != "answer" || posts[0].header.Get("Content-Type") != "text/plain" || posts[0].header.Get("X-Correlation") != "c1" {
		t.Errorf("posts = %+v; want one (retried after 503, the 410 not retried) with the metadata as headers", posts)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("server saw %d requests, want 3 (503, retry, 410 once)", n)
	}
	if err := c.Post(context.Background(), &yggdrasil.Data{Directive: "ftp://x"}); err == nil {
		t.Error("Post to a non-http URL: no error")
	}
}
