package tlsbridge

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/mles/mles/internal/poll"
)

// This file emulates an event loop over real sockets: one goroutine owns each
// accepted connection, receives what a reader goroutine got from the socket
// (as epoll would hand it to gnet), calls ReadPlain, and flushes the output;
// the Wake callback signals that goroutine. The bytes given to ReadPlain are
// poisoned after each call, as gnet reuses its buffer.

// testCert is one self-signed certificate for the whole package's tests.
var testCert = sync.OnceValue(func() tls.Certificate {
	cert, err := SelfSigned(nil)
	if err != nil {
		panic(err)
	}
	return cert
})

// clientConfig trusts testCert and speaks at most maxVersion (0: default).
func clientConfig(maxVersion uint16) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(testCert().Leaf)
	return &tls.Config{
		RootCAs:    pool,
		ServerName: "localhost",
		MaxVersion: maxVersion,
		NextProtos: []string{"http/1.1"},
	}
}

// result is how one server-side connection ended its handshake.
type result struct {
	state State
	err   error
	cs    tls.ConnectionState
	conn  *Conn
}

// loopServer is the emulated event-loop server.
type loopServer struct {
	tb      testing.TB
	ln      net.Listener
	cfg     Config // template; Wake and addresses are set per connection
	chunk   int    // deliver ciphertext in pieces of at most chunk bytes (0: as read)
	handler func(tc *Conn, p []byte) error
	results chan result
	done    chan struct{}
	wg      sync.WaitGroup

	closeOnce sync.Once
}

// echo writes every plaintext chunk back.
func echo(tc *Conn, p []byte) error {
	_, err := tc.Write(p)
	return err
}

// newLoopServer listens on 127.0.0.1:0 and serves until the test ends.
func newLoopServer(tb testing.TB, cfg Config, chunk int) *loopServer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	if cfg.TLS == nil {
		cfg.TLS = ServerConfig(Static(testCert()))
	}
	s := &loopServer{
		tb: tb, ln: ln, cfg: cfg, chunk: chunk, handler: echo,
		results: make(chan result, 4096),
		done:    make(chan struct{}),
	}
	s.wg.Add(1)
	go s.accept()
	tb.Cleanup(s.close)
	return s
}

func (s *loopServer) addr() string { return s.ln.Addr().String() }

// close stops the server and waits for every goroutine it started; safe to
// call more than once.
func (s *loopServer) close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.ln.Close()
	})
	s.wg.Wait()
}

func (s *loopServer) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go s.loop(nc)
	}
}

// next waits for the next handshake result.
func (s *loopServer) next(timeout time.Duration) result {
	s.tb.Helper()
	select {
	case r := <-s.results:
		return r
	case <-time.After(timeout):
		s.tb.Fatalf("no handshake result within %v", timeout)
		return result{}
	}
}

// loop owns one connection, like a gnet event loop owns its conns.
func (s *loopServer) loop(nc net.Conn) {
	defer s.wg.Done()
	wake := make(chan struct{}, 1)
	cfg := s.cfg
	cfg.Wake = func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	cfg.LocalAddr, cfg.RemoteAddr = nc.LocalAddr(), nc.RemoteAddr()
	tc := NewConn(cfg)
	tc.Start()

	data := make(chan []byte)
	ack := make(chan struct{})
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() { // the kernel's side: bytes arrive, the loop is told
		defer rwg.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := nc.Read(buf)
			if n > 0 {
				select {
				case data <- buf[:n]:
				case <-stop:
					return
				}
				select {
				case <-ack:
				case <-stop:
					return
				}
			}
			if err != nil {
				readErr <- err
				return
			}
		}
	}()
	defer func() {
		close(stop)
		tc.Close()
		nc.Close()
		rwg.Wait()
	}()

	plain := make([]byte, 16<<10)
	reported := false
	report := func(r result) {
		if !reported {
			reported = true
			s.results <- r
		}
	}
	flush := func() bool {
		out := tc.PeekOutput()
		if len(out) == 0 {
			return true
		}
		n, err := nc.Write(out)
		tc.DiscardOutput(n)
		return err == nil
	}
	fn := func(p []byte) error { return s.handler(tc, p) }
	// onTraffic is OnTraffic: p is nil after a wake.
	onTraffic := func(p []byte) bool {
		err := tc.ReadPlain(p, plain, fn)
		switch st := tc.State(); st {
		case Established:
			report(result{state: st, cs: tc.ConnectionState(), conn: tc})
		case Failed:
			report(result{state: st, err: tc.HandshakeErr(), conn: tc})
			flush() // the alert, if any
			if IsPlainHTTP(tc.HandshakeErr()) {
				io.WriteString(nc, PlainHTTPResponse)
			}
			return false
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				tc.CloseNotify()
			}
			flush()
			return false
		}
		return flush()
	}

	for {
		select {
		case p := <-data:
			ok := true
			if s.chunk > 0 {
				for len(p) > 0 && ok {
					k := min(s.chunk, len(p))
					ok = onTraffic(p[:k])
					poison(p[:k])
					p = p[k:]
				}
			} else {
				ok = onTraffic(p)
				poison(p)
			}
			ack <- struct{}{}
			if !ok {
				return
			}
		case <-wake:
			if !onTraffic(nil) {
				return
			}
		case <-readErr: // OnClose
			tc.Close()
			report(result{state: tc.State(), err: net.ErrClosed, conn: tc})
			return
		case <-s.done:
			return
		}
	}
}

// poison overwrites bytes the loop no longer owns, so that any retention
// shows up as corrupt data.
func poison(p []byte) {
	for i := range p {
		p[i] = 0xA5
	}
}

// dial connects a crypto/tls client to s and completes the handshake.
func dial(tb testing.TB, s *loopServer, cfg *tls.Config) *tls.Conn {
	tb.Helper()
	nc, err := net.Dial("tcp", s.addr())
	if err != nil {
		tb.Fatal(err)
	}
	cc := tls.Client(nc, cfg)
	cc.SetDeadline(time.Now().Add(20 * time.Second))
	if err := cc.Handshake(); err != nil {
		nc.Close()
		tb.Fatalf("client handshake: %v", err)
	}
	tb.Cleanup(func() { cc.Close() })
	return cc
}

// checkNoLeak waits for the goroutine count to come back to base.
func checkNoLeak(tb testing.TB, base int) {
	tb.Helper()
	poll.CheckFor(tb, 10*time.Second, 10*time.Millisecond, func() error {
		if n := runtime.NumGoroutine(); n > base {
			return fmt.Errorf("%d goroutines, baseline %d", n, base)
		}
		return nil
	})
}
