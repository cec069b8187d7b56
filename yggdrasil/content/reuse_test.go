package content

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil"
	"github.com/ygglab/yggdrasil/yggdrasil/internal/grpcbuf"
)

// large returns a buffer from the pool of large buffers, filled.
func large(n int, fill byte) []byte {
	b := grpcbuf.GetLarge(n)
	for i := range b {
		b[i] = fill
	}
	return b
}

// reusedWithin reports whether a buffer of b's size from the pool is b
// itself, in a few tries (sync.Pool may drop a buffer, the race detector
// on purpose): b was given back.
func reusedWithin(b []byte) bool {
	for range 5 {
		c := grpcbuf.GetLarge(len(b))
		same := &c[0] == &b[0]
		grpcbuf.ReleaseLarge(c)
		if same {
			return true
		}
	}
	return false
}

// TestPostReleasesLargeContent: the content of a POSTed answer is the
// exact bytes given, also across a retry, and its buffer serves again once
// the POST is over.
func TestPostReleasesLargeContent(t *testing.T) {
	const size = 256 << 10
	var mu sync.Mutex
	var bodies [][]byte
	first := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		bodies = append(bodies, b)
		if first {
			first = false
			http.Error(w, "busy", 503)
		}
	}))
	defer srv.Close()
	reused := 0
	for i := range 10 {
		content := large(size, byte('a'+i))
		c := New(Config{Backoff: time.Millisecond})
		if err := c.Post(context.Background(), &yggdrasil.Data{MessageID: "r1", Directive: srv.URL, Content: content}); err != nil {
			t.Fatal(err)
		}
		c.Close(context.Background()) // waits for the POST
		if reusedWithin(content) {
			reused++
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 11 {
		t.Fatalf("server got %d POSTs, want 11 (10 and a retry)", len(bodies))
	}
	for i, b := range bodies {
		k := max(i-1, 0) // the first POST was retried
		if !bytes.Equal(b, bytes.Repeat([]byte{byte('a' + k)}, size)) {
			t.Errorf("POST %d: body of %d bytes is not the content sent", i, len(b))
		}
	}
	if reused == 0 {
		t.Error("no posted content's buffer served again")
	}
}

// TestFetchBodyReleased: a large fetched body comes from the pool, and
// Release gives it back; a body from elsewhere is left alone.
func TestFetchBodyReleased(t *testing.T) {
	payload := bytes.Repeat([]byte("x"), 128<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(payload))) // else chunked: read by io.ReadAll
		w.Write(payload)
	}))
	defer srv.Close()
	c := New(Config{})
	reused := 0
	for range 10 {
		body, err := c.Fetch(context.Background(), &yggdrasil.Data{Content: quoted(srv.URL)})
		if err != nil || !bytes.Equal(body, payload) {
			t.Fatalf("Fetch = %d bytes, %v; want the payload", len(body), err)
		}
		c.Release(body)
		if reusedWithin(body) {
			reused++
		}
	}
	if reused == 0 {
		t.Error("no released body served again")
	}
	own := make([]byte, 128<<10)
	c.Release(own)
	if reusedWithin(own) {
		t.Error("a buffer that Fetch did not return was taken into the pool")
	}
}

// TestBodyCloseWhileRead: HTTP/2 closes a request body from another
// goroutine than the one reading it. Close waits for a Read under way,
// a Read after Close reads nothing, and only then does the answer's
// content count as no longer read (a review found the content released
// while a Read could still copy from it).
func TestBodyCloseWhileRead(t *testing.T) {
	for range 200 {
		var bs bodies
		content := bytes.Repeat([]byte("x"), 64<<10)
		rd := bs.reader(content)
		var wg sync.WaitGroup
		wg.Go(func() {
			buf := make([]byte, 512)
			for {
				if _, err := rd.Read(buf); err != nil {
					return
				}
			}
		})
		rd.Close()
		if !bs.closed() {
			t.Fatal("the body is not counted closed after Close")
		}
		// From here nothing may read the content: scribble on it, which
		// -race reports if a Read still copies from it.
		for i := range content {
			content[i] = 'y'
		}
		wg.Wait()
		if n, err := rd.Read(make([]byte, 8)); n != 0 || err == nil {
			t.Fatalf("Read after Close = %d, %v; want 0 and an error", n, err)
		}
	}
}
