package tlsbridge

import (
	"bytes"
	"crypto/tls"
	"testing"
	"time"
)

// A pair is a client Conn and a server Conn wired to each other in memory by
// the test, which plays both event loops: no sockets, fully deterministic.
type pair struct {
	tb       testing.TB
	srv, cli *Conn
	wake     chan struct{}
	plain    []byte
	buf      []byte
	got      []byte // plaintext collected by the receiving side
}

// newPair builds both ends and runs the handshake, delivering ciphertext in
// pieces of at most chunk bytes (0: whole).
func newPair(tb testing.TB, maxVersion uint16, chunk int) *pair {
	tb.Helper()
	p := &pair{tb: tb, wake: make(chan struct{}, 1), plain: make([]byte, 16<<10)}
	wake := func() {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
	p.srv = NewConn(Config{TLS: ServerConfig(Static(testCert())), Wake: wake, Timeout: 10 * time.Second})
	p.cli = NewClientConn(Config{TLS: clientConfig(maxVersion), Wake: wake, Timeout: 10 * time.Second})
	tb.Cleanup(p.srv.Close)
	tb.Cleanup(p.cli.Close)
	p.srv.Start()
	p.cli.Start()
	deadline := time.After(10 * time.Second)
	for p.srv.State() == Handshaking || p.cli.State() == Handshaking {
		if !p.pump(chunk) {
			select {
			case <-p.wake:
			case <-deadline:
				tb.Fatalf("handshake stuck: server %v, client %v", p.srv.State(), p.cli.State())
			}
		}
	}
	if p.srv.State() != Established || p.cli.State() != Established {
		tb.Fatalf("handshake: server %v (%v), client %v (%v)",
			p.srv.State(), p.srv.HandshakeErr(), p.cli.State(), p.cli.HandshakeErr())
	}
	// Flush what the handshakes left (TLS 1.3 session tickets) and drain.
	for p.pump(chunk) {
	}
	if len(p.got) != 0 {
		tb.Fatalf("plaintext during handshake: %q", p.got)
	}
	return p
}

// pump moves ciphertext both ways once and reports whether any moved.
func (p *pair) pump(chunk int) bool {
	moved := p.move(p.cli, p.srv, chunk)
	return p.move(p.srv, p.cli, chunk) || moved
}

// move flushes from's output into to's ReadPlain, chunk bytes at a time.
func (p *pair) move(from, to *Conn, chunk int) bool {
	p.tb.Helper()
	p.buf = from.AppendOutput(p.buf[:0])
	b := p.buf
	moved := len(b) > 0
	for {
		k := len(b)
		if chunk > 0 && k > chunk {
			k = chunk
		}
		if err := to.ReadPlain(b[:k], p.plain, p.collect); err != nil {
			p.tb.Fatalf("ReadPlain: %v", err)
		}
		poison(b[:k])
		b = b[k:]
		if len(b) == 0 {
			return moved
		}
	}
}

func (p *pair) collect(b []byte) error {
	p.got = append(p.got, b...)
	return nil
}

// send writes msg on from and returns its ciphertext (a copy).
func (p *pair) send(from *Conn, msg []byte) []byte {
	p.tb.Helper()
	if n, err := from.Write(msg); err != nil || n != len(msg) {
		p.tb.Fatalf("Write = %d, %v", n, err)
	}
	return from.AppendOutput(nil)
}

// TestPartialRecordsResume proves that the record layer does not latch the
// bridge's "would block": ciphertext split at every point (one record, then
// two records back to back) resumes correctly, and ReadPlain keeps nothing of
// the caller's slice (it is poisoned after each call).
func TestPartialRecordsResume(t *testing.T) {
	for _, tc := range []struct {
		name string
		vers uint16
	}{
		{"TLS12", tls.VersionTLS12}, // AES-GCM with explicit nonce
		{"TLS13", tls.VersionTLS13}, // inner content type, padding-free
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, tc.vers, 0)
			msg := []byte("split me anywhere")
			for _, records := range []int{1, 2} {
				probe := p.send(p.cli, msg)
				p.got = p.got[:0]
				if err := p.srv.ReadPlain(probe, p.plain, p.collect); err != nil {
					t.Fatal(err)
				}
				size := len(probe) * records
				for k := 0; k <= size; k++ {
					var ct []byte
					for range records {
						ct = append(ct, p.send(p.cli, msg)...)
					}
					p.got = p.got[:0]
					first, second := bytes.Clone(ct[:k]), bytes.Clone(ct[k:])
					if err := p.srv.ReadPlain(first, p.plain, p.collect); err != nil {
						t.Fatalf("k=%d first: %v", k, err)
					}
					poison(first)
					if want := bytes.Repeat(msg, k/len(probe)); !bytes.Equal(p.got, want) {
						t.Fatalf("k=%d after first part: %q, want %q", k, p.got, want)
					}
					if err := p.srv.ReadPlain(second, p.plain, p.collect); err != nil {
						t.Fatalf("k=%d second: %v", k, err)
					}
					poison(second)
					if want := bytes.Repeat(msg, records); !bytes.Equal(p.got, want) {
						t.Fatalf("k=%d: %q, want %q", k, p.got, want)
					}
				}
			}
		})
	}
}

// TestByteAtATimePair runs the handshake and a bulk exchange with every
// ciphertext byte delivered on its own, both directions.
func TestByteAtATimePair(t *testing.T) {
	for _, vers := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(vers), func(t *testing.T) {
			p := newPair(t, vers, 1)
			msg := bytes.Repeat([]byte("0123456789abcdef"), 2048) // 32 KiB: several records
			for _, dir := range []struct{ from, to *Conn }{{p.cli, p.srv}, {p.srv, p.cli}} {
				p.got = p.got[:0]
				if _, err := dir.from.Write(msg); err != nil {
					t.Fatal(err)
				}
				p.move(dir.from, dir.to, 1)
				if !bytes.Equal(p.got, msg) {
					t.Fatalf("got %d bytes, want %d", len(p.got), len(msg))
				}
			}
		})
	}
}

// TestClientConnState checks what the client end of a pair negotiated.
func TestClientConnState(t *testing.T) {
	p := newPair(t, 0, 0)
	cs := p.cli.ConnectionState()
	if cs.Version != tls.VersionTLS13 || cs.NegotiatedProtocol != "http/1.1" || !cs.HandshakeComplete {
		t.Fatalf("client state: version %x alpn %q complete %v", cs.Version, cs.NegotiatedProtocol, cs.HandshakeComplete)
	}
	if got := p.srv.ConnectionState().ServerName; got != "localhost" {
		t.Fatalf("server saw SNI %q", got)
	}
}

// TestDataWithFinished: a TLS 1.3 client may send application data right
// behind its Finished, in the same socket read. The server's ReadPlain copies
// both while Handshaking (calling fn for neither), and the ReadPlain(nil)
// after the handshake's Wake delivers the data.
func TestDataWithFinished(t *testing.T) {
	wake := make(chan struct{}, 1)
	signal := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	srv := NewConn(Config{TLS: ServerConfig(Static(testCert())), Wake: signal, Timeout: 10 * time.Second})
	cli := NewClientConn(Config{TLS: clientConfig(tls.VersionTLS13), Wake: signal, Timeout: 10 * time.Second})
	t.Cleanup(srv.Close)
	t.Cleanup(cli.Close)
	srv.Start()
	cli.Start()
	plain := make([]byte, 1024)
	var got []byte
	collect := func(b []byte) error { got = append(got, b...); return nil }
	wait := func(what string, done func() bool) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for !done() {
			select {
			case <-wake:
			case <-deadline:
				t.Fatalf("waiting for %s: server %v, client %v", what, srv.State(), cli.State())
			}
		}
	}
	// ClientHello.
	wait("ClientHello", func() bool { return cli.Pending() > 0 })
	if err := srv.ReadPlain(cli.AppendOutput(nil), plain, collect); err != nil {
		t.Fatal(err)
	}
	// Server flight until the client is done.
	wait("client handshake", func() bool {
		if err := cli.ReadPlain(srv.AppendOutput(nil), plain, collect); err != nil {
			t.Fatal(err)
		}
		return cli.State() != Handshaking
	})
	if cli.State() != Established {
		t.Fatalf("client: %v", cli.HandshakeErr())
	}
	if _, err := cli.Write([]byte("right behind Finished")); err != nil {
		t.Fatal(err)
	}
	// Finished and the data record in one read.
	if err := srv.ReadPlain(cli.AppendOutput(nil), plain, collect); err != nil {
		t.Fatal(err)
	}
	wait("server handshake", func() bool { return srv.State() != Handshaking })
	if srv.State() != Established {
		t.Fatalf("server: %v", srv.HandshakeErr())
	}
	if len(got) != 0 {
		t.Fatalf("plaintext before the wake-up: %q", got)
	}
	if err := srv.ReadPlain(nil, plain, collect); err != nil {
		t.Fatal(err)
	}
	if string(got) != "right behind Finished" {
		t.Fatalf("got %q", got)
	}
}
