package natstest

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/mles/mles/internal/mlestest"
	"github.com/nats-io/nats-server/v2/server"
)

// LogEnv is the environment variable that, set to 1, makes a Node log to
// standard error.
const LogEnv = "NATSTEST_LOG"

// readyTimeout bounds each wait for a server or a cluster to become ready.
// Generous: CI is a busy 2-core machine, where a 3-node cluster under
// go test -race elects its meta leader in seconds, not milliseconds.
const readyTimeout = 30 * time.Second

// Server is a nats-server with JetStream running inside the test process.
type Server struct {
	tb   testing.TB
	opts server.Options // what every start clones: the port and store stay
	srv  *server.Server // the running instance; nil once shut down
}

// Node starts a nats-server with JetStream (file store in tb.TempDir())
// on a free loopback port, waits until it accepts clients, and shuts it
// down when the test ends.
func Node(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{tb: tb, opts: server.Options{
		ServerName: "natstest",
		Host:       "127.0.0.1",
		Port:       mlestest.FreePort(tb),
		JetStream:  true,
		StoreDir:   tb.TempDir(),
		NoSigs:     true, // the signals are the test binary's
		NoLog:      os.Getenv(LogEnv) != "1",
	}}
	s.start()
	tb.Cleanup(s.Shutdown)
	return s
}

// URL returns the client URL, nats://127.0.0.1:PORT. It stays the same
// across Restart.
func (s *Server) URL() string {
	return fmt.Sprintf("nats://%s:%d", s.opts.Host, s.opts.Port)
}

// Shutdown stops the server and waits until it has closed its clients,
// listeners and store. Clients see the connection drop; a stopped server
// does nothing.
func (s *Server) Shutdown() {
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.srv = nil
}

// Restart shuts the server down if it runs, and starts it again on the
// same port with the same JetStream store: streams and messages written
// before are there again.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Shutdown()
	s.start()
}

// start runs a new server instance from s.opts and waits until it accepts
// clients. A Server instance cannot be started twice: each start is a new
// one, from a copy of the options (NewServer fills in defaults in place).
func (s *Server) start() {
	s.tb.Helper()
	srv, err := server.NewServer(s.opts.Clone())
	if err != nil {
		s.tb.Fatalf("natstest: new server: %v", err)
	}
	if !s.opts.NoLog {
		srv.ConfigureLogger()
	}
	srv.Start()
	if !srv.ReadyForConnections(readyTimeout) {
		srv.Shutdown()
		s.tb.Fatalf("natstest: server on %s not ready within %v", s.URL(), readyTimeout)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		s.tb.Fatalf("natstest: server on %s runs without JetStream (%s=1 shows why)", s.URL(), LogEnv)
	}
	s.srv = srv
}
