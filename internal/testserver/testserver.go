// Package testserver starts an in-process server for tests, as
// httptest.NewServer does for net/http: on the options given (a loopback
// port 0 address among them), listening when Start returns, shut down when
// the test ends. It is apart from mlestest because it imports server, which
// codec's own tests (using mlestest) must not.
package testserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"sync"
	"testing"
	"time"

	"github.com/mles/mles/server"
	"github.com/mles/mles/tlsbridge"
)

// Options are the options tests start a server from: loopback port 0, two
// reactors, a fine timer tick, liveness pings far away (so a raw client
// sees no server ping it did not ask for), handshake and header timeouts
// long enough for a busy machine, and TLS with ServerTLS or plain.
func Options(tb testing.TB, useTLS bool) server.Options {
	opts := server.Options{
		Addr:             "127.0.0.1:0",
		Reactors:         2,
		HandshakeTimeout: 10 * time.Second,
		HeaderTimeout:    10 * time.Second,
		PingInterval:     time.Hour,
		TickInterval:     50 * time.Millisecond,
		DrainTimeout:     2 * time.Second,
	}
	if useTLS {
		opts.TLS = ServerTLS(tb)
	} else {
		opts.Plain = true
	}
	return opts
}

// Start creates and starts a server on opts and shuts it down, with a 10 s
// bound, when the test ends.
func Start(tb testing.TB, opts server.Options) *server.Server {
	tb.Helper()
	s, err := server.New(opts)
	if err != nil {
		tb.Fatalf("server.New: %v", err)
	}
	if err := s.Start(); err != nil {
		tb.Fatalf("Start: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			tb.Logf("Shutdown: %v", err)
		}
	})
	return s
}

var (
	certOnce sync.Once
	testCert tls.Certificate
	certPool *x509.CertPool
	certErr  error
)

// selfSigned returns the product's self-signed certificate (the no-flag
// default of cmd/mles: localhost, 127.0.0.1, ::1), made once per test
// binary, and a pool that trusts it so clients verify the server for real.
func selfSigned(tb testing.TB) (tls.Certificate, *x509.CertPool) {
	tb.Helper()
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
		tb.Fatalf("self-signed certificate: %v", certErr)
	}
	return testCert, certPool
}

// ServerTLS is a server TLS configuration with the self-signed certificate.
func ServerTLS(tb testing.TB) *tls.Config {
	cert, _ := selfSigned(tb)
	return tlsbridge.ServerConfig(tlsbridge.Static(cert))
}

// ClientTLS verifies a server that uses ServerTLS, reached as 127.0.0.1.
func ClientTLS(tb testing.TB) *tls.Config {
	_, pool := selfSigned(tb)
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}
