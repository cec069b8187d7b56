package content

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// onlyReader hides a reader's type, so that the client does not know the
// body's length and sends it chunked.
type onlyReader struct{ io.Reader }

// TestPostBodies: a POST body is recorded whole whether its length is
// known or not, and one over MaxPostSize is cut there and answered 413.
func TestPostBodies(t *testing.T) {
	tests := []struct {
		name       string
		body       io.Reader
		wantBody   string
		wantStatus int
	}{
		{name: "known_length", body: strings.NewReader("0123456789"), wantBody: "0123456789", wantStatus: 200},
		{name: "unknown_length", body: onlyReader{strings.NewReader("0123456789")}, wantBody: "0123456789", wantStatus: 200},
		{name: "empty", body: http.NoBody, wantBody: "", wantStatus: 200},
		{name: "known_too_large", body: strings.NewReader("0123456789abcdef"), wantBody: "0123456789ab", wantStatus: 413},
		{name: "unknown_too_large", body: onlyReader{strings.NewReader("0123456789abcdef")}, wantBody: "0123456789ab", wantStatus: 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, &Server{MaxPostSize: 12})
			resp, err := http.Post(s.URL()+"/r", "text/plain", tt.body)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			posts := s.Posts()
			if len(posts) != 1 || !bytes.Equal(posts[0].Body, []byte(tt.wantBody)) {
				t.Errorf("recorded %d posts, want one with body %q (got %+v)", len(posts), tt.wantBody, posts)
			}
		})
	}
}
