package www

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// site writes a test site: two hosts, a secret beside the root, and
// symbolic links that try to leave a host's directory.
func site(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "www")
	files := map[string]string{
		"www/example.org/index.html":     "<h1>example</h1>",
		"www/example.org/app.js":         "console.log(1)",
		"www/example.org/data.json":      `{"a":1}`,
		"www/example.org/sub/index.html": "sub index",
		"www/example.org/digits.txt":     "0123456789",
		"www/other.org/private.txt":      "other's",
		"secret.txt":                     "outside the root",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"www/example.org/up.txt":    "../../secret.txt",
		"www/example.org/other.txt": "../other.org/private.txt",
		"www/example.org/abs.txt":   filepath.Join(dir, "secret.txt"),
		"www/example.org/same.txt":  "app.js",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func get(t *testing.T, h http.Handler, method, host, target string, hdr map[string]string) *http.Response {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, err := http.NewRequest(method, srv.URL+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp
}

func body(r *http.Response) string {
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

func TestServe(t *testing.T) {
	h, err := New(Config{Root: site(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, tc := range []struct {
		name, method, host, target string
		status                     int
		body, ctype                string
	}{
		{"index", "GET", "example.org", "/", 200, "<h1>example</h1>", "text/html; charset=utf-8"},
		{"file", "GET", "example.org", "/app.js", 200, "console.log(1)", "text/javascript; charset=utf-8"},
		{"host with port and case", "GET", "Example.ORG:8443", "/app.js", 200, "console.log(1)", ""},
		{"directory index", "GET", "example.org", "/sub/", 200, "sub index", ""},
		{"directory without slash", "GET", "example.org", "/sub?x=1", 301, "", ""},
		{"symlink inside the host", "GET", "example.org", "/same.txt", 200, "console.log(1)", ""},
		{"missing", "GET", "example.org", "/nope.html", 404, "", ""},
		{"dot dot", "GET", "example.org", "/../other.org/private.txt", 404, "", ""},
		{"encoded dot dot", "GET", "example.org", "/..%2fother.org%2fprivate.txt", 404, "", ""},
		{"symlink up and out", "GET", "example.org", "/up.txt", 404, "", ""},
		{"symlink to another host", "GET", "example.org", "/other.txt", 404, "", ""},
		{"absolute symlink", "GET", "example.org", "/abs.txt", 404, "", ""},
		{"unknown host", "GET", "nobody.org", "/", 404, "", ""},
		{"host dot dot", "GET", "..", "/secret.txt", 404, "", ""},
		{"POST", "POST", "example.org", "/", 405, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := get(t, h, tc.method, tc.host, tc.target, nil)
			if r.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", r.StatusCode, tc.status)
			}
			if b := body(r); tc.body != "" && b != tc.body {
				t.Fatalf("body %q, want %q", b, tc.body)
			}
			if tc.ctype != "" && r.Header.Get("Content-Type") != tc.ctype {
				t.Fatalf("Content-Type %q, want %q", r.Header.Get("Content-Type"), tc.ctype)
			}
			if tc.status == 301 && r.Header.Get("Location") != "/sub/?x=1" {
				t.Fatalf("Location %q, want /sub/?x=1", r.Header.Get("Location"))
			}
		})
	}
}

func TestServeHeaders(t *testing.T) {
	h, err := New(Config{Root: site(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	r := get(t, h, "GET", "example.org", "/data.json", nil)
	if r.Header.Get("Access-Control-Allow-Origin") != "*" || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		t.Fatalf(".json headers %v", r.Header)
	}
	if r := get(t, h, "GET", "example.org", "/app.js", nil); r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("CORS header on a non-JSON file")
	}

	r = get(t, h, "GET", "example.org", "/digits.txt", nil)
	tag, lm := r.Header.Get("ETag"), r.Header.Get("Last-Modified")
	if tag == "" || lm == "" {
		t.Fatalf("no validators: %v", r.Header)
	}
	if r := get(t, h, "GET", "example.org", "/digits.txt", map[string]string{"If-None-Match": tag}); r.StatusCode != 304 {
		t.Fatalf("If-None-Match: status %d, want 304", r.StatusCode)
	}
	if r := get(t, h, "GET", "example.org", "/digits.txt", map[string]string{"If-Modified-Since": lm}); r.StatusCode != 304 {
		t.Fatalf("If-Modified-Since: status %d, want 304", r.StatusCode)
	}
	if r := get(t, h, "GET", "example.org", "/digits.txt", map[string]string{"If-None-Match": `"other"`}); r.StatusCode != 200 {
		t.Fatalf("a stale ETag: status %d, want 200", r.StatusCode)
	}

	r = get(t, h, "GET", "example.org", "/digits.txt", map[string]string{"Range": "bytes=2-5"})
	if r.StatusCode != 206 || body(r) != "2345" || r.Header.Get("Content-Range") != "bytes 2-5/10" {
		t.Fatalf("Range: status %d, Content-Range %q", r.StatusCode, r.Header.Get("Content-Range"))
	}

	r = get(t, h, "HEAD", "example.org", "/digits.txt", nil)
	if r.StatusCode != 200 || body(r) != "" || r.Header.Get("Content-Length") != "10" {
		t.Fatalf("HEAD: status %d, Content-Length %q", r.StatusCode, r.Header.Get("Content-Length"))
	}

	// A changed file gets a new ETag.
	p := filepath.Join(h.root.Name(), "example.org", "digits.txt")
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(p, later, later); err != nil {
		t.Fatal(err)
	}
	if r := get(t, h, "GET", "example.org", "/digits.txt", map[string]string{"If-None-Match": tag}); r.StatusCode != 200 {
		t.Fatalf("ETag of a changed file still matches: status %d", r.StatusCode)
	}
}

func TestServeHosts(t *testing.T) {
	files, err := New(Config{Root: site(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer files.Close()
	h := OnlyHosts([]string{"Example.org"}, files)
	if r := get(t, h, "GET", "example.org", "/", nil); r.StatusCode != 200 {
		t.Fatalf("a listed host: status %d", r.StatusCode)
	}
	if r := get(t, h, "GET", "other.org", "/private.txt", nil); r.StatusCode != 404 {
		t.Fatalf("a host with a directory but not listed: status %d, want 404", r.StatusCode)
	}
}

func TestNewMissingRoot(t *testing.T) {
	if _, err := New(Config{Root: filepath.Join(t.TempDir(), "none")}); err == nil || !strings.Contains(err.Error(), "wwwroot") {
		t.Fatalf("err = %v, want a wwwroot error", err)
	}
}

// TestFileLimit: with FileLimit 1, a download whose client does not read
// holds the one slot and a second request waits; when the first client
// goes, the second is served.
func TestFileLimit(t *testing.T) {
	root := site(t)
	big := filepath.Join(root, "example.org", "big.bin")
	if err := os.WriteFile(big, make([]byte, 32<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{Root: root, FileLimit: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	srv := httptest.NewServer(h)
	defer srv.Close()

	stalled, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	if _, err := io.WriteString(stalled, "GET /big.bin HTTP/1.1\r\nHost: example.org\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// The first bytes of the answer say its handler holds the slot; then
	// it reads no more, and the handler blocks in its write.
	if _, err := stalled.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}

	done := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("GET", srv.URL+"/app.js", nil)
		req.Host = "example.org"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- string(b)
	}()
	select {
	case got := <-done:
		t.Fatalf("a second file served while the only slot is held: %q", got)
	case <-time.After(300 * time.Millisecond): // absence: it may only come late, never early
	}
	stalled.Close()
	select {
	case got := <-done:
		if got != "console.log(1)" {
			t.Fatalf("the waiting request got %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting request was not served after the slot was freed")
	}
}
