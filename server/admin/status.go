package admin

import (
	_ "embed"
	"net/http"
)

// statusHTML is the status page: one file, its CSS and script inline, no
// external asset (the admin port may be reachable only from a jump host).
// The script reads varz (relative, so the page works behind a path
// prefix) every two seconds, fills the elements marked data-figure with
// the figures, keeps up to ten minutes of samples in the page and draws
// deliveries per second and connections as inline SVG. Tests read the
// data-figure elements (test/interop/chromium.mjs --status).
//
//go:embed status.html
var statusHTML []byte

// statusPage serves the status page.
func statusPage(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// Nothing but this page's own inline code and same-origin fetches.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(statusHTML)
}
