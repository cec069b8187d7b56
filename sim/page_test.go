package sim

import (
	"bytes"
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

func TestPageServing(t *testing.T) {
	s := MustStart(t, &Server{})
	tests := []struct {
		name   string
		method string
		path   string
		status int
		ctype  string // prefix
		body   string // substring
	}{
		{"index", "GET", "/", 200, "text/html", `<script src="/page/app.js" defer></script>`},
		{"script", "GET", "/page/app.js", 200, "text/javascript", "use strict"},
		{"style", "GET", "/page/style.css", 200, "text/css", ":root"},
		{"icon", "GET", "/page/icon.svg", 200, "image/svg+xml", "<svg"},
		{"unknown_file", "GET", "/page/nope.js", 404, "application/json", `"status":404`},
		{"unknown_type", "GET", "/page/index.txt", 404, "application/json", `"status":404`},
		{"directory", "GET", "/page/", 404, "application/json", `"status":404`},
		{"traversal", "GET", "/page/..%2fpage.go", 404, "application/json", `"status":404`},
		{"other_path_stays_api", "GET", "/nope", 404, "application/json", "no such endpoint"},
		{"post_root", "POST", "/", 405, "application/json", `"status":405`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(testContext(t), tt.method, s.APIURL()+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var b bytes.Buffer
			if _, err := b.ReadFrom(resp.Body); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d, want %d (%s)", resp.StatusCode, tt.status, b.String())
			}
			if got := resp.Header.Get("Content-Type"); !strings.HasPrefix(got, tt.ctype) {
				t.Errorf("Content-Type = %q, want %s…", got, tt.ctype)
			}
			if !strings.Contains(b.String(), tt.body) {
				t.Errorf("body does not contain %q:\n%s", tt.body, b.String())
			}
			if tt.status != 200 {
				return
			}
			for k, want := range map[string]string{
				"Content-Security-Policy": pageCSP,
				"X-Content-Type-Options":  "nosniff",
				"X-Frame-Options":         "DENY",
			} {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

// TestPageCSP checks that the policy allows nothing but the sim's own
// files: no inline script or style, no eval, no other origin.
func TestPageCSP(t *testing.T) {
	for _, d := range strings.Split(pageCSP, ";") {
		d = strings.TrimSpace(d)
		if strings.Contains(d, "unsafe") || strings.Contains(d, "*") || strings.Contains(d, "data:") || strings.Contains(d, "http") {
			t.Errorf("directive %q allows more than the sim's own origin", d)
		}
	}
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'"} {
		if !strings.Contains(pageCSP, want) {
			t.Errorf("policy lacks %q: %s", want, pageCSP)
		}
	}
}

// TestPageNoMarkupFromData guards the rule that the page shows host data
// as text only: its files use no API that parses a string as HTML or
// code, and the HTML has no inline script, style or handler, which the
// policy would refuse anyway.
func TestPageNoMarkupFromData(t *testing.T) {
	sinks := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setAttribute\(\s*['"]on|\.src\s*=|\.href\s*=|createContextualFragment|DOMParser`)
	inline := regexp.MustCompile(`(?i)<script>|<style|\son[a-z]+=|style=`)
	err := fs.WalkDir(webFiles, "web", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := webFiles.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.HasSuffix(path, ".js") {
			for _, m := range sinks.FindAllString(string(b), -1) {
				t.Errorf("%s uses %s", path, m)
			}
		}
		if strings.HasSuffix(path, ".html") {
			for _, m := range inline.FindAllString(string(b), -1) {
				t.Errorf("%s has inline %q", path, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
