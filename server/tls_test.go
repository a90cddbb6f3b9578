package server_test

// Acceptance 4 (issue 2), server level: the TLS bridge carries TLS 1.2 and
// 1.3, 1 MiB messages and 500 concurrent connections.

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/internal/poll"
	"github.com/mles/mles/server"
)

var tlsMode = mode{"tls", true}

// TestTLSVersions checks that clients limited to TLS 1.2 or to TLS 1.3
// join and exchange messages, with raw and gorilla clients.
func TestTLSVersions(t *testing.T) {
	ts := startServer(t, tlsMode, nil)
	for _, v := range []struct {
		name    string
		version uint16
	}{{"1.2", tls.VersionTLS12}, {"1.3", tls.VersionTLS13}} {
		t.Run(v.name, func(t *testing.T) {
			ts.waitMembers(t, 0) // the previous subtest's clients are gone
			cfg := clientTLSConfig(t)
			cfg.MinVersion, cfg.MaxVersion = v.version, v.version
			ch := "tls" + v.name
			join := func(uid string) *rawClient {
				before := ts.Stats().Members
				c := ts.upgraded(t, dialConfig{tls: cfg.Clone()})
				if got := c.conn.(*tls.Conn).ConnectionState().Version; got != v.version {
					t.Fatalf("negotiated TLS %x, want %x", got, v.version)
				}
				c.mustSend(t, ws.OpText, headerJSON(uid, ch))
				ts.waitMembers(t, before+1)
				return c
			}
			a := join("a")
			b := join("b")
			expectJoinFrame(t, b.mustRecv(t), "a", ch)
			a.mustSend(t, ws.OpText, []byte("over "+v.name))
			b.expectMsg(t, ws.OpText, "over "+v.name)
			b.mustSend(t, ws.OpBinary, []byte{1, 2, 3})
			a.expectMsg(t, ws.OpBinary, "\x01\x02\x03")

			before := ts.Stats().Members
			gc, _, err := ts.dialGorilla(t, nil, cfg.Clone())
			if err != nil {
				t.Fatalf("gorilla over TLS %s: %v", v.name, err)
			}
			t.Cleanup(func() { gc.Close() })
			g := &gorillaClient{gc}
			if err := g.Send(ws.OpText, headerJSON("g", ch)); err != nil {
				t.Fatal(err)
			}
			ts.waitMembers(t, before+1)
			if err := g.Send(ws.OpText, []byte("from gorilla")); err != nil {
				t.Fatal(err)
			}
			a.expectData(t, ws.OpText, "from gorilla")
			b.expectData(t, ws.OpText, "from gorilla")
		})
	}
}

// TestLargeMessage checks a 1 MiB message is delivered intact, both
// whole and reassembled from 64 KiB fragments.
func TestLargeMessage(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, func(o *server.Options) { o.MaxMessage = 2 << 20 })
		g := ts.joinGorilla(t, "g", "large")
		r := ts.join(t, "r", "large")
		c := ts.joinCoder(t, "c", "large")
		ts.waitMembers(t, 3)

		big := make([]byte, 1<<20)
		_, _ = rand.Read(big)
		if err := g.Send(ws.OpBinary, big); err != nil {
			t.Fatal(err)
		}
		expectClientMsg(t, "raw", r, ws.OpBinary, big)
		expectClientMsg(t, "coder", c, ws.OpBinary, big)

		// 1 MiB of text sent as 16 fragments by the raw client.
		text := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
		var frames bytes.Buffer
		const frag = 64 << 10
		for off := 0; off < len(text); off += frag {
			op := ws.OpContinuation
			if off == 0 {
				op = ws.OpText
			}
			frames.Write(maskedFrame(op, off+frag >= len(text), 0, text[off:off+frag]))
		}
		if err := r.write(frames.Bytes()); err != nil {
			t.Fatal(err)
		}
		expectClientMsg(t, "gorilla", g, ws.OpText, text)
		expectClientMsg(t, "coder", c, ws.OpText, text)
	})
}

// TestTLSConcurrent checks 500 concurrent TLS connections in 5 channels:
// each sends one message and receives exactly the other 99 of its channel.
func TestTLSConcurrent(t *testing.T) {
	const (
		conns    = 500
		channels = 5
		perChan  = conns / channels
		dialPar  = 50
	)
	ts := startServer(t, tlsMode, nil)
	clients := make([]*rawClient, conns)
	t.Cleanup(func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	})
	uid := func(i int) string { return fmt.Sprintf("u%03d", i) }
	chOf := func(i int) string { return fmt.Sprintf("ch%d", i%channels) }

	start := time.Now()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []string
		sem  = make(chan struct{}, dialPar)
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		errs = append(errs, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := ts.joinErr(uid(i), chOf(i), dialConfig{})
			if err != nil {
				fail("%s: %v", uid(i), err)
				return
			}
			clients[i] = c
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d joins failed, first: %s", len(errs), conns, strings.Join(errs[:min(5, len(errs))], "; "))
	}
	ts.waitMembers(t, conns)
	if got := ts.Stats().Conns; got != conns {
		t.Fatalf("Stats().Conns = %d, want %d", got, conns)
	}
	t.Logf("%d TLS joins in %v", conns, time.Since(start))

	// Everyone sends, then everyone reads until it has its 99.
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.send(ws.OpBinary, []byte(uid(i))); err != nil {
				fail("%s send: %v", uid(i), err)
			}
		}()
	}
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got := map[string]bool{}
			for len(got) < perChan-1 {
				m, err := c.recv(30 * time.Second)
				if err != nil {
					fail("%s after %d messages: %v", uid(i), len(got), err)
					return
				}
				if m.op == ws.OpText {
					continue // stored join frames
				}
				from := string(m.data)
				var j int
				if _, err := fmt.Sscanf(from, "u%d", &j); err != nil || j%channels != i%channels {
					fail("%s in %s got %q from another channel", uid(i), chOf(i), from)
					return
				}
				if j == i {
					fail("%s got its own message", uid(i))
					return
				}
				if got[from] {
					fail("%s got %q twice", uid(i), from)
					return
				}
				got[from] = true
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		sort.Strings(errs)
		t.Fatalf("%d errors, first: %s", len(errs), strings.Join(errs[:min(5, len(errs))], "; "))
	}
	t.Logf("exchange done at %v", time.Since(start))

	for _, c := range clients {
		c.Close()
	}
	poll.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		if s := ts.Stats(); s.Conns != 0 || s.Members != 0 || s.Handshakes != 0 {
			return fmt.Errorf("stats after closing all: %+v", s)
		}
		return nil
	})
}
