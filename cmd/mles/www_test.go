package main

import (
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mles/mles/internal/mlestest"
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
