package interop_test

// Interoperability with third-party WebSocket clients in other languages,
// each run as a separate process against an in-process server, over TLS and
// plain: node ws 8 (ws_client.mjs), Python websockets 10 (py_websockets.py),
// autobahn-python as a frame crafter (autobahn_frames.py) and headless
// Chromium driven by playwright-core (chromium.mjs).
//
// deps.sh installs the clients (make deps). A missing client skips its test,
// or fails it when MLES_INTEROP=require (make test sets it). Set
// MLES_INTEROP_LOG=debug to see the server's log.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mles/mles/internal/poll"
	"github.com/mles/mles/internal/testserver"
	"github.com/mles/mles/server"
	"github.com/mles/mles/server/www"
)

const (
	// maxMessage is the server's MaxMessage: small, so that the clients can
	// cross it cheaply (1009).
	maxMessage = 64 << 10

	// debianPython is Debian's interpreter: the python3 first on PATH may be
	// another build that cannot import Debian's python3-* packages.
	debianPython = "/usr/bin/python3"
	chromiumPath = "/usr/bin/chromium"
)

type mode struct {
	name string
	tls  bool
}

var modes = []mode{{"tls", true}, {"plain", false}}

// ---------------------------------------------------------------------------
// server under test

func logger() *slog.Logger {
	lvl := os.Getenv("MLES_INTEROP_LOG")
	if lvl == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var l slog.Level
	_ = l.UnmarshalText([]byte(lvl))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// startServer starts a server on a loopback port in mode m and shuts it
// down when the test ends. It returns the server and its WebSocket URL.
// mods change the options first.
func startServer(t *testing.T, m mode, mods ...func(*server.Options)) (*server.Server, string) {
	t.Helper()
	opts := testserver.Options(t, m.tls)
	opts.MaxMessage = maxMessage
	opts.History = 100
	opts.Logger = logger()
	for _, mod := range mods {
		mod(&opts)
	}
	s := testserver.Start(t, opts)
	scheme := "ws"
	if m.tls {
		scheme = "wss"
	}
	return s, scheme + "://" + s.Addr().String() + "/"
}

// ---------------------------------------------------------------------------
// client availability

// unavailable skips the test, or fails it under MLES_INTEROP=require.
func unavailable(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("MLES_INTEROP") == "require" {
		t.Fatalf("third-party client unavailable and MLES_INTEROP=require: %s (run ./test/interop/deps.sh)", reason)
	}
	t.Skipf("third-party client unavailable: %s (run ./test/interop/deps.sh; MLES_INTEROP=require makes this a failure)", reason)
}

func requireNode(t *testing.T, modules ...string) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		unavailable(t, "node not on PATH")
	}
	for _, m := range modules {
		if _, err := os.Stat(filepath.Join("node_modules", m, "package.json")); err != nil {
			unavailable(t, fmt.Sprintf("npm package %s not installed in test/interop/node_modules", m))
		}
	}
	return node
}

func requirePython(t *testing.T, imports string) {
	t.Helper()
	if _, err := os.Stat(debianPython); err != nil {
		unavailable(t, debianPython+" missing")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, debianPython, "-c", imports)
	cmd.Env = pythonEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		unavailable(t, fmt.Sprintf("%s -c %q: %v: %s", debianPython, imports, err, lastLine(out)))
	}
}

// pythonEnv is the environment without variables that would point Debian's
// interpreter at another installation's modules.
func pythonEnv() []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "PYTHONPATH=") || strings.HasPrefix(kv, "PYTHONHOME=")
	})
	return append(env, "PYTHONNOUSERSITE=1", "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1")
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// ---------------------------------------------------------------------------
// running a client

// report is the JSON summary each client script prints last.
type report struct {
	Client  string   `json:"client"`
	Version any      `json:"version"`
	Passed  []string `json:"passed"`
	Failed  *string  `json:"failed"`
}

// runClient runs one client script against srv, within limit, and checks
// that it exited 0, reported no failure and passed every check in want.
// Afterwards every connection the client made must be gone from the server.
func runClient(t *testing.T, srv *server.Server, limit time.Duration, env []string, want []string, argv ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	// SIGTERM first: playwright-core then closes the browser it started.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start).Round(time.Millisecond)
	name := filepath.Base(argv[1])
	logOutput := func() {
		t.Logf("%s stdout:\n%s", name, indent(stdout.String()))
		if stderr.Len() > 0 {
			t.Logf("%s stderr:\n%s", name, indent(stderr.String()))
		}
	}
	if ctx.Err() != nil {
		logOutput()
		t.Fatalf("%s did not finish within %v (%v)", name, limit, err)
	}
	rep, perr := parseReport(stdout.Bytes())
	if err != nil || perr != nil || rep.Failed != nil {
		logOutput()
		switch {
		case rep.Failed != nil:
			t.Fatalf("%s failed after %v: %s", name, elapsed, *rep.Failed)
		case err != nil:
			t.Fatalf("%s exited after %v: %v", name, elapsed, err)
		default:
			t.Fatalf("%s: no summary line: %v", name, perr)
		}
	}
	var missing []string
	for _, w := range want {
		if !slices.Contains(rep.Passed, w) {
			missing = append(missing, w)
		}
	}
	if len(missing) > 0 {
		logOutput()
		t.Fatalf("%s exited 0 but did not pass %v (passed %v)", name, missing, rep.Passed)
	}
	t.Logf("%s %v passed %d checks in %v: %s", rep.Client, rep.Version, len(rep.Passed), elapsed, strings.Join(rep.Passed, " "))

	// The client process is gone, and with it every connection it had.
	poll.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		st := srv.Stats()
		if st.Conns != 0 || st.Members != 0 {
			return fmt.Errorf("server still has %d connections and %d members after the client exited", st.Conns, st.Members)
		}
		return nil
	})
}

func parseReport(out []byte) (report, error) {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(l, "{") {
			continue
		}
		var r report
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			return report{}, fmt.Errorf("summary line %q: %w", l, err)
		}
		return r, nil
	}
	return report{}, fmt.Errorf("no JSON summary line in %d lines of output", len(lines))
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// forModes runs f against a fresh server over TLS and in plain mode.
func forModes(t *testing.T, f func(t *testing.T, srv *server.Server, url string)) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			srv, url := startServer(t, m)
			f(t, srv, url)
		})
	}
}

// ---------------------------------------------------------------------------
// the clients

// TestInteropNodeWS: node ws 8. Two members exchange text and binary both
// ways (types and bytes intact, nothing echoed), a third gets the history,
// ping/pong, close code echo, 1009 over MaxMessage, and the subprotocol
// rules: a list containing mles-websocket is accepted, none gets a 400.
func TestInteropNodeWS(t *testing.T) {
	node := requireNode(t, "ws")
	want := []string{"subprotocol", "join-history", "ping-pong", "a-to-b", "b-to-a", "no-echo",
		"history", "close-echo", "too-big-1009", "subprotocol-list", "no-subprotocol-400"}
	forModes(t, func(t *testing.T, srv *server.Server, url string) {
		runClient(t, srv, 60*time.Second, os.Environ(), want,
			node, "ws_client.mjs", url, "--max-message", strconv.Itoa(maxMessage))
	})
}

// TestInteropPythonWebsockets: Python websockets 10 (asyncio). The same
// exchange and history, close echo, and invalid headers closed with 1008
// at once without leaving a join in the history.
func TestInteropPythonWebsockets(t *testing.T) {
	requirePython(t, "import websockets")
	want := []string{"subprotocol", "join-history", "ping-pong", "a-to-b", "b-to-a", "no-echo",
		"history", "close-echo", "invalid-header-1008", "no-bad-joins-in-history"}
	forModes(t, func(t *testing.T, srv *server.Server, url string) {
		runClient(t, srv, 60*time.Second, pythonEnv(), want,
			debianPython, "py_websockets.py", url)
	})
}

// TestInteropAutobahnFrames: autobahn-python's Twisted client as a frame
// crafter, Autobahn testsuite style: one-octet writes, a ping between
// fragments, UTF-8 split inside a code point, and each protocol violation
// closed with its code (1002, 1007, 1009).
func TestInteropAutobahnFrames(t *testing.T) {
	requirePython(t, "import twisted, autobahn; from autobahn.twisted.websocket import WebSocketClientProtocol")
	want := []string{"chopsize-1", "ping-between-fragments", "utf8-split-codepoint", "max-size-ok",
		"opcode-3", "opcode-11", "rsv1", "rsv2-binary", "ping-126", "ping-fragmented",
		"continuation-first", "text-inside-fragments", "invalid-utf8", "invalid-utf8-fragmented",
		"too-big", "too-big-fragmented", "close-echo"}
	forModes(t, func(t *testing.T, srv *server.Server, url string) {
		runClient(t, srv, 90*time.Second, pythonEnv(), want,
			debianPython, "autobahn_frames.py", url, "--max-message", strconv.Itoa(maxMessage))
	})
}

// TestInteropChromium: the browser's own WebSocket (headless Chromium via
// playwright-core). Two page connections negotiate mles-websocket, join,
// exchange text and ArrayBuffer messages both ways and get their close
// codes echoed.
func TestInteropChromium(t *testing.T) {
	node := requireNode(t, "playwright-core")
	if _, err := os.Stat(chromiumPath); err != nil {
		unavailable(t, chromiumPath+" missing (Debian package chromium)")
	}
	want := []string{"launch", "protocol", "join-history", "a-to-b", "b-to-a", "no-echo", "close-echo"}
	forModes(t, func(t *testing.T, srv *server.Server, url string) {
		runClient(t, srv, 120*time.Second, os.Environ(), want, node, "chromium.mjs", url)
	})
}

// TestInteropChromiumSite: two headless Chromium pages load a page from the
// server's own static site (the HTTP side with server/www, as -w) and each
// opens a WebSocket to the same origin (wss:// over TLS, ws:// plain); the
// pages exchange a message through one channel, nothing echoed.
func TestInteropChromiumSite(t *testing.T) {
	node := requireNode(t, "playwright-core")
	if _, err := os.Stat(chromiumPath); err != nil {
		unavailable(t, chromiumPath+" missing (Debian package chromium)")
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "127.0.0.1"), 0o755); err != nil {
		t.Fatal(err)
	}
	page := `<!doctype html><meta charset="utf-8"><title>mles site</title><p>served by mles -w</p>`
	if err := os.WriteFile(filepath.Join(root, "127.0.0.1", "index.html"), []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	site, err := www.New(www.Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	want := []string{"launch", "site-page", "same-origin", "two-pages"}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			srv, url := startServer(t, m, func(o *server.Options) { o.HTTP = site })
			pageURL := "http://" + srv.Addr().String() + "/"
			if m.tls {
				pageURL = "https://" + srv.Addr().String() + "/"
			}
			runClient(t, srv, 120*time.Second, os.Environ(), want, node, "chromium.mjs", url, "--site", pageURL)
		})
	}
}
