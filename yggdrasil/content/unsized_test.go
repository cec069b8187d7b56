package content

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/ygglab/yggdrasil/yggdrasil"
)

// TestFetchUnsized: a body sent without its length (chunked) is read
// whole up to the limit, and refused one byte past it.
func TestFetchUnsized(t *testing.T) {
	const limit = 3<<20 + 5
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		w.(http.Flusher).Flush() // the headers go now, without a length
		b := bytes.Repeat([]byte("0123456789"), n/10+1)[:n]
		for len(b) > 0 { // in pieces, as a server streaming it would
			k := min(len(b), 7000)
			w.Write(b[:k])
			b = b[k:]
		}
	}))
	defer srv.Close()
	c := New(Config{MaxSize: limit})
	tests := []struct {
		name    string
		size    int
		wantErr bool
	}{
		{name: "empty", size: 0},
		{name: "small", size: 10},
		{name: "over_first_buffer", size: 5000},
		{name: "large", size: 1<<20 + 3},
		{name: "at_limit", size: limit},
		{name: "over_limit", size: limit + 1, wantErr: true},
		{name: "far_over_limit", size: 2 * limit, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := c.Fetch(context.Background(), &yggdrasil.Data{Content: quoted(srv.URL + "/" + strconv.Itoa(tt.size))})
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "larger than the limit") {
					t.Fatalf("Fetch of %d bytes: error %v, want one about the limit", tt.size, err)
				}
				return
			}
			want := bytes.Repeat([]byte("0123456789"), tt.size/10+1)[:tt.size]
			if err != nil || !bytes.Equal(body, want) {
				t.Fatalf("Fetch of %d bytes: %d bytes, %v", tt.size, len(body), err)
			}
			c.Release(body)
		})
	}
}
