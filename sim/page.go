package sim

import (
	"bytes"
	"embed"
	"io/fs"
	"net/http"
	"path"
	"time"
)

// The page is a plain HTML, JavaScript and CSS application in web/, built
// into the binary as it is: there is no build step and no framework. It
// reads and drives the sim through the same API as every other client.
//
//go:embed web
var webFiles embed.FS

// PagePath is where the page's scripts, styles and icon are served; the
// page itself is at "/".
const PagePath = "/page/"

// pageCSP is the page's Content-Security-Policy: scripts, styles, images
// and connections from the sim's own origin only, no inline script or
// style, no plugins, no framing, no form posting anywhere. Everything the
// page shows comes from hosts, which are not trusted, so a slip into HTML
// rendering must not be able to run anything.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// handlePage registers the page at "/" and its files under PagePath. "/"
// matches only itself, so unknown paths still get the API's JSON 404.
func (s *Server) handlePage(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { servePageFile(w, r, "index.html") })
	mux.HandleFunc("GET "+PagePath+"{name}", func(w http.ResponseWriter, r *http.Request) {
		servePageFile(w, r, r.PathValue("name"))
	})
}

// pageTypes are the content types of the page's files, by extension: a
// file of any other kind is not served.
var pageTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

func servePageFile(w http.ResponseWriter, r *http.Request, name string) {
	ctype, ok := pageTypes[path.Ext(name)]
	var b []byte
	var err error
	if ok && fs.ValidPath(name) {
		b, err = webFiles.ReadFile("web/" + name)
	}
	if !ok || err != nil {
		writeError(w, apiError(http.StatusNotFound, "no such page file: %s", name))
		return
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
}
