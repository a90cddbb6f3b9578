package server_test

// Helpers shared by the end-to-end acceptance tests (e2e_*_test.go): an
// in-process server on a loopback port, a raw WebSocket client that writes
// hand-crafted frames (gobwas/ws low-level API) over net.Conn or tls.Conn,
// adapters for the third-party clients gorilla/websocket and
// coder/websocket, and a deadline-based condition wait in the style of
// nats-server's checkFor.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/dchest/siphash"

	"github.com/mles/mles/server"
	"github.com/mles/mles/tlsbridge"
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

// ---------------------------------------------------------------------------
// condition waits

// checkFor calls f every interval until it returns nil or total elapses, in
// which case the test fails with f's last error (nats-server checkFor).
func checkFor(t testing.TB, total, interval time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", total, err)
		}
		time.Sleep(interval)
	}
}

// ---------------------------------------------------------------------------
// TLS material

var (
	certOnce sync.Once
	testCert tls.Certificate
	certPool *x509.CertPool
	certErr  error
)

// selfSigned returns the product's self-signed certificate (the no-flag
// default of cmd/mles), shared by every test in the binary, and a pool that
// trusts it so clients verify the server for real.
func selfSigned(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	certOnce.Do(func() {
		testCert, certErr = tlsbridge.SelfSigned(nil)
		if certErr != nil {
			return
		}
		leaf, err := x509.ParseCertificate(testCert.Certificate[0])
		if err != nil {
			certErr = err
			return
		}
		certPool = x509.NewCertPool()
		certPool.AddCert(leaf)
	})
	if certErr != nil {
		t.Fatalf("self-signed certificate: %v", certErr)
	}
	return testCert, certPool
}

func serverTLSConfig(t testing.TB) *tls.Config {
	cert, _ := selfSigned(t)
	return tlsbridge.ServerConfig(tlsbridge.Static(cert))
}

// clientTLSConfig verifies the server against the test certificate.
func clientTLSConfig(t testing.TB) *tls.Config {
	_, pool := selfSigned(t)
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

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

// baseOptions are the options every test starts from: loopback port 0,
// two reactors, a fine timer tick, and liveness pings far away so that a
// raw client sees no server ping unless a test asks for one.
func baseOptions(t testing.TB, m mode) server.Options {
	opts := server.Options{
		Addr:             "127.0.0.1:0",
		Reactors:         2,
		HandshakeTimeout: 10 * time.Second,
		HeaderTimeout:    10 * time.Second,
		PingInterval:     time.Hour,
		TickInterval:     50 * time.Millisecond,
		DrainTimeout:     2 * time.Second,
		Logger:           testLogger(),
	}
	if m.tls {
		opts.TLS = serverTLSConfig(t)
	} else {
		opts.Plain = true
	}
	return opts
}

// testLogger discards server logs unless MLES_E2E_LOG is set (to a slog
// level name such as debug).
func testLogger() *slog.Logger {
	lvl := os.Getenv("MLES_E2E_LOG")
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
	s, err := server.New(opts)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Logf("Shutdown: %v", err)
		}
	})
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
