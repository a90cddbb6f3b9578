package main

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mles/mles/internal/mlestest"
	"github.com/mles/mles/internal/poll"
)

// TestWWWRoot: the binary with mles-rs's -w serves DIR/<host>/ on the TLS
// port (its no-flag self-signed certificate), to net/http's client, beside
// the WebSocket; and a missing directory stops it at start with the flag's
// name.
func TestWWWRoot(t *testing.T) {
	dir := t.TempDir()
	site := filepath.Join(dir, "www", "127.0.0.1")
	if err := os.MkdirAll(site, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(site, "index.html"), []byte("<h1>MlesTalk</h1>"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := startLoopbackMles(t, dir, "-w", filepath.Join(dir, "www"), "-f", "4")
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // the self-signed default
	}
	resp, err := client.Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "<h1>MlesTalk</h1>" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if d, err := joinRoundTrip(addr, "www"); err != nil {
		t.Fatalf("join beside the site: %v", err)
	} else {
		t.Logf("join beside the site: %v", d)
	}

	mles := mlestest.BuildBin(t, dir, "mles", "github.com/mles/mles/cmd/mles")
	out, err := exec.Command(mles, "--plain", "-p", "0", "-w", filepath.Join(dir, "none")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "wwwroot") {
		t.Fatalf("a missing -w directory: err %v, output %q", err, out)
	}
}

// TestRedirectAndProxy: -r answers plain HTTP on --redirect-port with 301
// to https, path and query kept; -P forwards method, the path after the
// prefix, the query and the body to the upstream, over the TLS port.
func TestRedirectAndProxy(t *testing.T) {
	seen := make(chan string, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen <- r.Method + " " + r.URL.RequestURI() + " " + string(b)
		io.WriteString(w, "from upstream")
	}))
	defer up.Close()
	redirPort := mlestest.FreePort(t)
	_, addr := startLoopbackMles(t, t.TempDir(), "-r", "--redirect-port", strconv.Itoa(redirPort), "-P", "/api="+up.URL)
	_, port, _ := net.SplitHostPort(addr)

	noFollow := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	var resp *http.Response
	poll.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		var err error
		resp, err = noFollow.Get("http://127.0.0.1:" + strconv.Itoa(redirPort) + "/room/x?name=a%20b&n=1")
		return err
	})
	resp.Body.Close()
	want := "https://127.0.0.1:" + port + "/room/x?name=a%20b&n=1"
	if resp.StatusCode != 301 || resp.Header.Get("Location") != want {
		t.Fatalf("redirect: %d %q, want 301 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}

	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // the self-signed default
	}
	resp, err := client.Post("https://"+addr+"/api/v1/items?q=1", "text/plain", strings.NewReader("the body"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "from upstream" {
		t.Fatalf("proxy: %d %q", resp.StatusCode, body)
	}
	if got := <-seen; got != "POST /v1/items?q=1 the body" {
		t.Fatalf("upstream saw %q", got)
	}
	if resp, err := client.Get("https://" + addr + "/elsewhere"); err != nil || resp.StatusCode != 404 {
		t.Fatalf("outside the prefix without -w: %v %v", resp, err)
	}
}
