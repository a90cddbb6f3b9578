package server_test

// Helpers shared by the end-to-end tests of package server_test: an
// in-process server on a loopback port, a raw WebSocket client that writes
// hand-crafted frames (gobwas/ws low-level API) over net.Conn or tls.Conn,
// adapters for the third-party clients gorilla/websocket and
// coder/websocket, and a deadline-based condition wait in the style of
// nats-server's checkFor.

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/dchest/siphash"

	"github.com/mles/mles/internal/testserver"
	"github.com/mles/mles/server"
)

const (
	subprotocol = "mles-websocket"
	// wsGUID is the RFC 6455 section 1.3 magic appended to Sec-WebSocket-Key.
	wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

	// shortWait bounds waits for things that should happen at once
	// (a delivery, a close after a protocol error).
	shortWait = 5 * time.Second
	// quickClose is the bound for "closed at once" assertions: well below
	// the header and handshake timeouts the tests configure.
	quickClose = 2 * time.Second
)

// clientTLSConfig verifies the server against the test certificate.
func clientTLSConfig(t testing.TB) *tls.Config { return testserver.ClientTLS(t) }

// ---------------------------------------------------------------------------
// server under test

type mode struct {
	name string
	tls  bool
}

var modes = []mode{{"tls", true}, {"plain", false}}

// forModes runs f once over TLS and once in plain mode.
func forModes(t *testing.T, f func(t *testing.T, m mode)) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) { f(t, m) })
	}
}

type testServer struct {
	*server.Server
	t    testing.TB
	tls  bool
	addr string
}

// baseOptions are the options every test starts from (testserver.Options)
// with the test log.
func baseOptions(t testing.TB, m mode) server.Options {
	opts := testserver.Options(t, m.tls)
	opts.Logger = testLogger()
	return opts
}

// testLogger discards server logs unless MLES_TEST_LOG is set (to a slog
// level name such as debug).
func testLogger() *slog.Logger {
	lvl := os.Getenv("MLES_TEST_LOG")
	if lvl == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var l slog.Level
	_ = l.UnmarshalText([]byte(lvl))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// startServer starts a server in mode m, with mod applied to the base
// options, and shuts it down when the test ends.
func startServer(t testing.TB, m mode, mod func(*server.Options)) *testServer {
	t.Helper()
	opts := baseOptions(t, m)
	if mod != nil {
		mod(&opts)
	}
	s := testserver.Start(t, opts)
	return &testServer{Server: s, t: t, tls: m.tls, addr: s.Addr().String()}
}

func (ts *testServer) url() string {
	if ts.tls {
		return "wss://" + ts.addr + "/"
	}
	return "ws://" + ts.addr + "/"
}

// ---------------------------------------------------------------------------
// Mles header frames and auth

// headerJSON builds a Mles header frame; auth is added when given.
func headerJSON(uid, channel string, auth ...string) []byte {
	m := map[string]string{"uid": uid, "channel": channel}
	if len(auth) > 0 {
		m["auth"] = auth[0]
	}
	b, _ := json.Marshal(m)
	return b
}

// authToken computes the SPEC 1.2 token independently of the codec
// package: SipHash-2-4, key (0,0), over uid||channel||key, as %016x.
func authToken(uid, channel, key string) string {
	return fmt.Sprintf("%016x", siphash.Hash(0, 0, []byte(uid+channel+key)))
}
