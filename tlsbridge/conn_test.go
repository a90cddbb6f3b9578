package tlsbridge

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/mles/mles/internal/poll"
)

// roundTrip writes msg on cc and reads the echo back, concurrently so that a
// large message cannot fill both socket buffers.
func roundTrip(t testing.TB, cc *tls.Conn, msg []byte) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, err := cc.Write(msg)
		errc <- err
	}()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(cc, got); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo differs (%d bytes)", len(msg))
	}
}

// TestEcho runs real crypto/tls clients against the emulated loop.
func TestEcho(t *testing.T) {
	for _, tc := range []struct {
		name  string
		vers  uint16
		chunk int
	}{
		{"TLS12", tls.VersionTLS12, 0},          // whole socket reads
		{"TLS13", tls.VersionTLS13, 0},          // whole socket reads
		{"TLS12/bytewise", tls.VersionTLS12, 1}, // every ciphertext byte alone, handshake and after
		{"TLS13/bytewise", tls.VersionTLS13, 1}, // every ciphertext byte alone, handshake and after
		{"TLS13/chunk7", tls.VersionTLS13, 7},   // record headers split at odd offsets
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newLoopServer(t, Config{Timeout: 10 * time.Second}, tc.chunk)
			cc := dial(t, s, clientConfig(tc.vers))
			r := s.next(5 * time.Second)
			if r.state != Established || r.cs.Version != tc.vers || r.cs.NegotiatedProtocol != "http/1.1" {
				t.Fatalf("server: %v %v version %x alpn %q", r.state, r.err, r.cs.Version, r.cs.NegotiatedProtocol)
			}
			if got := cc.ConnectionState().NegotiatedProtocol; got != "http/1.1" {
				t.Fatalf("client ALPN %q", got)
			}
			for i := range 5 {
				roundTrip(t, cc, fmt.Appendf(nil, "hello %d", i))
			}
			roundTrip(t, cc, bytes.Repeat([]byte{'x'}, 40<<10))
		})
	}
}

// TestLargeMessage sends 1 MiB each way through one connection.
func TestLargeMessage(t *testing.T) {
	for _, vers := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(vers), func(t *testing.T) {
			s := newLoopServer(t, Config{Timeout: 10 * time.Second}, 0)
			cc := dial(t, s, clientConfig(vers))
			msg := make([]byte, 1<<20)
			for i := range msg {
				msg[i] = byte(i * 7)
			}
			roundTrip(t, cc, msg)
			r := s.next(5 * time.Second)
			// A burst must not pin its buffer on the idle connection.
			poll.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
				r.conn.tr.mu.Lock()
				defer r.conn.tr.mu.Unlock()
				if c := cap(r.conn.tr.out); c > maxIdleCap {
					return fmt.Errorf("output buffer cap %d after flush", c)
				}
				return nil
			})
		})
	}
}

// TestManyConns runs 500 concurrent connections, each exchanging messages.
func TestManyConns(t *testing.T) {
	const conns, msgs = 500, 4
	base := runtime.NumGoroutine()
	func() {
		s := newLoopServer(t, Config{Timeout: 20 * time.Second}, 0)
		cfg := clientConfig(0)
		var wg sync.WaitGroup
		errc := make(chan error, conns)
		for i := range conns {
			wg.Go(func() {
				nc, err := net.Dial("tcp", s.addr())
				if err != nil {
					errc <- err
					return
				}
				cc := tls.Client(nc, cfg)
				defer cc.Close()
				cc.SetDeadline(time.Now().Add(30 * time.Second))
				for j := range msgs {
					msg := fmt.Appendf(nil, "conn %d message %d", i, j)
					if _, err := cc.Write(msg); err != nil {
						errc <- err
						return
					}
					got := make([]byte, len(msg))
					if _, err := io.ReadFull(cc, got); err != nil {
						errc <- err
						return
					}
					if !bytes.Equal(got, msg) {
						errc <- fmt.Errorf("conn %d: got %q", i, got)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Error(err)
		}
		for range conns {
			if r := s.next(5 * time.Second); r.state != Established {
				t.Errorf("server side: %v %v", r.state, r.err)
			}
		}
		s.close()
	}()
	checkNoLeak(t, base)
}

// TestHandshakeTimeout: a client that connects and says nothing is failed by
// Config.Timeout, and every goroutine goes away.
func TestHandshakeTimeout(t *testing.T) {
	base := runtime.NumGoroutine()
	s := newLoopServer(t, Config{Timeout: 200 * time.Millisecond}, 0)
	nc, err := net.Dial("tcp", s.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	start := time.Now()
	r := s.next(5 * time.Second)
	if r.state != Failed || !errors.Is(r.err, ErrHandshakeTimeout) {
		t.Fatalf("got %v %v, want Failed with ErrHandshakeTimeout", r.state, r.err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("timed out after %v", d)
	}
	waitExited(t, r.conn)
	// The server closed the socket.
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("client read: %v, want EOF", err)
	}
	nc.Close()
	s.close()
	checkNoLeak(t, base)
}

// waitExited waits for c's handshake goroutine to return.
func waitExited(t testing.TB, c *Conn) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !c.exited.Load() {
		if time.Now().After(deadline) {
			t.Fatal("handshake goroutine still running")
		}
		time.Sleep(time.Millisecond) // poll: the flag is the goroutine's last act
	}
}

// TestCloseWakesHandshake: Close from another goroutine ends a handshake
// blocked waiting for input, before and after its first bytes, without
// calling Wake.
func TestCloseWakesHandshake(t *testing.T) {
	hello := clientHello(t)
	for _, tc := range []struct {
		name string
		feed []byte
	}{
		{"idle", nil},                      // blocked before any input
		{"midHello", hello[:len(hello)/2]}, // blocked inside crypto/tls reading the ClientHello
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := runtime.NumGoroutine()
			woke := make(chan struct{}, 1)
			c := NewConn(Config{TLS: ServerConfig(Static(testCert())), Wake: func() { woke <- struct{}{} }})
			c.Start()
			if err := c.Feed(tc.feed); err != nil {
				t.Fatal(err)
			}
			if tc.feed != nil {
				poll.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
					c.tr.mu.Lock()
					consumed := c.tr.inOff == len(c.tr.in)
					c.tr.mu.Unlock()
					if !consumed {
						return errors.New("half ClientHello not read by crypto/tls yet")
					}
					return nil
				})
			}
			go c.Close()
			waitExited(t, c)
			if c.State() != Closed {
				t.Fatalf("state %v", c.State())
			}
			if len(woke) != 0 {
				t.Fatal("Wake called after Close")
			}
			if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Write after Close: %v", err)
			}
			if err := c.ReadPlain([]byte("x"), make([]byte, 16), func([]byte) error { return nil }); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("ReadPlain after Close: %v", err)
			}
			c.Close() // idempotent
			checkNoLeak(t, base)
		})
	}
}

// clientHello captures a real ClientHello from a client Conn.
func clientHello(t testing.TB) []byte {
	t.Helper()
	c := NewClientConn(Config{TLS: clientConfig(0)})
	c.Start()
	defer c.Close()
	poll.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if c.Pending() == 0 {
			return errors.New("no ClientHello yet")
		}
		return nil
	})
	return c.AppendOutput(nil)
}

// TestGarbage: what is not TLS is failed fast and leaks nothing.
func TestGarbage(t *testing.T) {
	hello := clientHello(t)
	random := make([]byte, 512)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	random[0] = 0x47 // not a handshake or alert record type
	badBody := bytes.Clone(hello)
	for i := 9; i < len(badBody); i++ { // keep the record and message headers
		badBody[i] = 0xff
	}
	for _, tc := range []struct {
		name      string
		send      []byte
		closeSend bool  // client closes after sending
		wantState State // server-side outcome
		plainHTTP bool  // IsPlainHTTP(err) and the clear-text 400 answer
	}{
		{"random", random, false, Failed, false},                                      // first record does not look like TLS
		{"httpGET", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false, Failed, true}, // like net/http
		{"httpPOST", []byte("POST /x HTTP/1.1\r\n\r\n"), false, Failed, true},         // like net/http
		{"badClientHello", badBody, false, Failed, false},                             // decode error alert
		{"truncatedHello", hello[:len(hello)/2], true, Closed, false},                 // peer gives up: OnClose
		{"sslv2", []byte{0x80, 0x2e, 0x01, 0x03, 0x01}, false, Failed, false},         // SSLv2 hello
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := runtime.NumGoroutine()
			s := newLoopServer(t, Config{Timeout: 30 * time.Second}, 0)
			nc, err := net.Dial("tcp", s.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			start := time.Now()
			if _, err := nc.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			if tc.closeSend {
				nc.Close()
			}
			r := s.next(5 * time.Second)
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("took %v", d)
			}
			if r.state != tc.wantState {
				t.Fatalf("state %v (%v), want %v", r.state, r.err, tc.wantState)
			}
			if got := IsPlainHTTP(r.err); got != tc.plainHTTP {
				t.Fatalf("IsPlainHTTP(%v) = %v", r.err, got)
			}
			if !tc.closeSend {
				nc.SetReadDeadline(time.Now().Add(5 * time.Second))
				answer, _ := io.ReadAll(nc)
				if tc.plainHTTP && string(answer) != PlainHTTPResponse {
					t.Fatalf("answer %q", answer)
				}
			}
			waitExited(t, r.conn)
			nc.Close()
			s.close()
			checkNoLeak(t, base)
		})
	}
}

// TestTruncatedHelloTimesOut: a client that stops in the middle of its
// ClientHello and holds the connection open is failed by the timeout.
func TestTruncatedHelloTimesOut(t *testing.T) {
	hello := clientHello(t)
	s := newLoopServer(t, Config{Timeout: 200 * time.Millisecond}, 0)
	nc, err := net.Dial("tcp", s.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.Write(hello[:len(hello)-1])
	r := s.next(5 * time.Second)
	if r.state != Failed || !errors.Is(r.err, ErrHandshakeTimeout) {
		t.Fatalf("got %v %v", r.state, r.err)
	}
}

// TestCloseNotify: the client's close_notify reaches ReadPlain as io.EOF, and
// the server's CloseNotify reaches the client as io.EOF.
func TestCloseNotify(t *testing.T) {
	for _, vers := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(vers), func(t *testing.T) {
			s := newLoopServer(t, Config{Timeout: 10 * time.Second}, 0)
			cc := dial(t, s, clientConfig(vers))
			roundTrip(t, cc, []byte("before close"))
			if err := cc.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			// The loop answers EOF with its own close_notify.
			n, err := cc.Read(make([]byte, 1))
			if n != 0 || err != io.EOF {
				t.Fatalf("client Read = %d, %v; want close_notify EOF", n, err)
			}
		})
	}
}

// TestServerInitiatedCloseNotify: CloseNotify queues the alert; later Writes
// fail.
func TestServerInitiatedCloseNotify(t *testing.T) {
	p := newPair(t, tls.VersionTLS13, 0)
	p.srv.CloseNotify()
	if _, err := p.srv.Write([]byte("late")); err == nil {
		t.Fatal("Write after CloseNotify succeeded")
	}
	out := p.srv.AppendOutput(nil)
	err := p.cli.ReadPlain(out, p.plain, p.collect)
	if err != io.EOF {
		t.Fatalf("client ReadPlain: %v, want io.EOF", err)
	}
}

// TestBufferFull: ciphertext beyond MaxBuffered while the handshake goroutine
// lags is refused.
func TestBufferFull(t *testing.T) {
	c := NewConn(Config{TLS: ServerConfig(Static(testCert())), MaxBuffered: 100})
	defer c.Close()
	// Not started: nothing reads, so everything stays buffered.
	if err := c.ReadPlain(make([]byte, 60), nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.ReadPlain(make([]byte, 60), nil, nil); !errors.Is(err, ErrBufferFull) {
		t.Fatalf("got %v, want ErrBufferFull", err)
	}
}

// TestNotEstablished: loop methods that need the handshake refuse before it.
func TestNotEstablished(t *testing.T) {
	c := NewConn(Config{TLS: ServerConfig(Static(testCert()))})
	defer c.Close()
	if _, err := c.Write([]byte("x")); !errors.Is(err, ErrNotEstablished) {
		t.Fatalf("Write: %v", err)
	}
	c.CloseNotify() // no-op
	if c.Pending() != 0 || c.HandshakeErr() != nil || c.ConnectionState().HandshakeComplete {
		t.Fatal("state leaked before the handshake")
	}
}

// TestFnErrorKeepsRest: when the plaintext callback fails, the unread
// ciphertext survives (copied) for the next ReadPlain.
func TestFnErrorKeepsRest(t *testing.T) {
	p := newPair(t, tls.VersionTLS13, 0)
	ct := append(p.send(p.cli, []byte("one")), p.send(p.cli, []byte("two"))...)
	stop := errors.New("stop")
	err := p.srv.ReadPlain(ct, p.plain, func(b []byte) error {
		p.got = append(p.got, b...)
		return stop
	})
	if err != stop || string(p.got) != "one" {
		t.Fatalf("got %q, %v", p.got, err)
	}
	poison(ct)
	if err := p.srv.ReadPlain(nil, p.plain, p.collect); err != nil {
		t.Fatal(err)
	}
	if string(p.got) != "onetwo" {
		t.Fatalf("got %q", p.got)
	}
}

// TestPeekDiscard: a partial DiscardOutput keeps the rest in order.
func TestPeekDiscard(t *testing.T) {
	p := newPair(t, tls.VersionTLS13, 0)
	p.srv.Write([]byte("abc"))
	p.srv.Write([]byte("def"))
	all := bytes.Clone(p.srv.PeekOutput())
	if p.srv.Pending() != len(all) {
		t.Fatalf("Pending %d, want %d", p.srv.Pending(), len(all))
	}
	p.srv.DiscardOutput(7)
	if rest := p.srv.PeekOutput(); !bytes.Equal(rest, all[7:]) {
		t.Fatal("rest differs")
	}
	p.srv.DiscardOutput(len(all))
	if p.srv.Pending() != 0 {
		t.Fatal("not drained")
	}
	if err := p.cli.ReadPlain(all, p.plain, p.collect); err != nil || string(p.got) != "abcdef" {
		t.Fatalf("got %q, %v", p.got, err)
	}
}

// TestStateString covers the log names.
func TestStateString(t *testing.T) {
	for s, want := range map[State]string{Handshaking: "handshaking", Established: "established", Failed: "failed", Closed: "closed", 9: "unknown"} {
		if s.String() != want {
			t.Errorf("%d: %q", s, s.String())
		}
	}
}

// TestShrink: an idle connection can give its buffers back and still work.
func TestShrink(t *testing.T) {
	p := newPair(t, tls.VersionTLS13, 0)
	p.srv.Shrink()
	p.srv.tr.mu.Lock()
	in, out := cap(p.srv.tr.in), cap(p.srv.tr.out)
	p.srv.tr.mu.Unlock()
	if in != 0 || out != 0 {
		t.Fatalf("caps after Shrink: in %d out %d", in, out)
	}
	ct := p.send(p.srv, []byte("still here"))
	if err := p.cli.ReadPlain(ct, p.plain, p.collect); err != nil || string(p.got) != "still here" {
		t.Fatalf("got %q, %v", p.got, err)
	}
}
