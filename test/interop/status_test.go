package interop_test

// The admin side (server/admin, mles --admin) read by third-party tools:
// Prometheus's promtool lints a real /metrics scrape, and headless
// Chromium loads the status page (chromium.mjs --status).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mles/mles/internal/poll"
	"github.com/mles/mles/server"
	"github.com/mles/mles/server/admin"
)

// promtoolPath is Debian's promtool (package prometheus).
const promtoolPath = "/usr/bin/promtool"

// startAdmin starts a plain server with the admin handler beside it and
// returns the server, its WebSocket URL and the admin base URL.
func startAdmin(t *testing.T) (*server.Server, string, string) {
	t.Helper()
	var opts server.Options
	srv, url := startServer(t, mode{"plain", false}, func(o *server.Options) { opts = *o })
	hs := httptest.NewServer(admin.New(admin.Config{Server: srv, Options: &opts, Version: "interop", Logger: logger()}))
	t.Cleanup(hs.Close)
	return srv, url, hs.URL
}

// members joins n gorilla/websocket members, member i to channel
// i % channels, and waits until the server counts them all; they close
// when the test ends.
func members(t *testing.T, srv *server.Server, url string, n, channels int) []*websocket.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"mles-websocket"}, HandshakeTimeout: 10 * time.Second}
	var cs []*websocket.Conn
	for i := range n {
		c, _, err := d.Dial(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		hdr := fmt.Sprintf(`{"uid":"u%d","channel":"status-%d"}`, i, i%channels)
		if err := c.WriteMessage(websocket.TextMessage, []byte(hdr)); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	poll.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if m := srv.Stats().Members; m != int64(n) {
			return fmt.Errorf("members %d, want %d", m, n)
		}
		return nil
	})
	return cs
}

// httpGet returns the body of a 200 answer to url.
func httpGet(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return b
}

// TestInteropPromtool: `promtool check metrics` (Prometheus's own linter)
// passes on a real scrape taken after traffic and a bad header, so that
// the labeled families (closes, close codes) have series too.
func TestInteropPromtool(t *testing.T) {
	promtool, err := exec.LookPath(promtoolPath)
	if err != nil {
		unavailable(t, promtoolPath+" missing (Debian package prometheus)")
	}
	srv, url, adminURL := startAdmin(t)
	cs := members(t, srv, url, 3, 1)
	if err := cs[0].WriteMessage(websocket.BinaryMessage, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	d := websocket.Dialer{Subprotocols: []string{"mles-websocket"}}
	bad, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	_ = bad.WriteMessage(websocket.TextMessage, []byte(`{"uid":"x"}`)) // no channel: 1008
	var scrape []byte
	poll.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		scrape = httpGet(t, adminURL+"/metrics")
		if want := `mles_close_codes_sent_total{code="1008"} 1`; !bytes.Contains(scrape, []byte(want)) {
			return fmt.Errorf("no %s in the scrape yet", want)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(scrape)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s\nscrape:\n%s", err, indent(string(out)), indent(string(scrape)))
	}
	t.Logf("promtool check metrics passed on %d bytes, %d mles_ lines", len(scrape), bytes.Count(scrape, []byte("\nmles_")))
}

// statusReport is chromium.mjs --status's summary line.
type statusReport struct {
	report
	Figures map[string]string `json:"figures"`
}

// TestInteropStatusPage: headless Chromium loads the admin status page
// while members are connected and idle; the page reads /varz, redraws in
// place, logs no console error, and shows the figures /varz reports at
// that moment (connections, members, channels, counters, reactors).
func TestInteropStatusPage(t *testing.T) {
	node := requireNode(t, "playwright-core")
	if _, err := os.Stat(chromiumPath); err != nil {
		unavailable(t, chromiumPath+" missing (Debian package chromium)")
	}
	srv, url, adminURL := startAdmin(t)
	cs := members(t, srv, url, 5, 2)
	if err := cs[0].WriteMessage(websocket.BinaryMessage, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	_ = cs[2].SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, p, err := cs[2].ReadMessage(); err != nil {
			t.Fatal(err)
		} else if string(p) == "hello" {
			break // a delivery, so the counters are not all 0
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "chromium.mjs", "--status", adminURL+"/")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) } // playwright closes the browser
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var rep statusReport
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	jsonErr := json.Unmarshal([]byte(lines[len(lines)-1]), &rep)
	if runErr != nil || jsonErr != nil || rep.Failed != nil {
		t.Fatalf("chromium.mjs --status: %v %v\nstdout:\n%s\nstderr:\n%s", runErr, jsonErr, indent(stdout.String()), indent(stderr.String()))
	}
	for _, w := range []string{"launch", "status-page", "refreshed-in-place", "charts", "no-console-errors"} {
		if !slices.Contains(rep.Passed, w) {
			t.Errorf("chromium.mjs --status did not pass %s (passed %v)", w, rep.Passed)
		}
	}

	var v admin.Varz
	if err := json.Unmarshal(httpGet(t, adminURL+"/varz"), &v); err != nil {
		t.Fatal(err)
	}
	shown := func(name string) int64 {
		n, err := strconv.ParseInt(strings.ReplaceAll(rep.Figures[name], ",", ""), 10, 64)
		if err != nil {
			t.Errorf("the page shows %s as %q", name, rep.Figures[name])
		}
		return n
	}
	for _, c := range []struct {
		name string
		want int64
	}{
		{"connections", v.Connections},
		{"members", v.Members},
		{"channels", int64(v.Channels)},
		{"messages_in", int64(v.MessagesIn)},
		{"deliveries", int64(v.Deliveries)},
		{"history_messages", v.HistoryMessages},
		{"connections_accepted", int64(v.Accepted)},
		{"reactor_rows", int64(len(v.ReactorConnections))},
	} {
		if got := shown(c.name); got != c.want {
			t.Errorf("the page shows %s %d, /varz %d", c.name, got, c.want)
		}
	}
	if v.Members != 5 || v.Channels != 2 {
		t.Errorf("/varz members %d, channels %d: want 5 and 2", v.Members, v.Channels)
	}
	if rep.Figures["state"] != "ready" || rep.Figures["version"] != "interop" {
		t.Errorf("the page shows state %q, version %q", rep.Figures["state"], rep.Figures["version"])
	}
	t.Logf("chromium %v: %v; figures %v", rep.Version, rep.Passed, rep.Figures)
}
