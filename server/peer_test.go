package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/internal/mlestest"
	"github.com/mles/mles/internal/poll"
	"github.com/mles/mles/server"
)

// peerURL is the URL of a server on port in mode m.
func peerURL(m mode, port int) string {
	if m.tls {
		return fmt.Sprintf("wss://127.0.0.1:%d/", port)
	}
	return fmt.Sprintf("ws://127.0.0.1:%d/", port)
}

// startPeered starts servers on the given ports, server i peering with
// the ports links[i] names.
func startPeered(t *testing.T, m mode, links [][]int, mod func(i int, o *server.Options)) []*testServer {
	t.Helper()
	ports := make([]int, len(links))
	for i := range ports {
		ports[i] = mlestest.FreePort(t)
	}
	var out []*testServer
	for i, to := range links {
		out = append(out, startServer(t, m, func(o *server.Options) {
			o.Addr = fmt.Sprintf("127.0.0.1:%d", ports[i])
			o.ServerID = fmt.Sprintf("s%d", i)
			for _, j := range to {
				o.Peers = append(o.Peers, peerURL(m, ports[j]))
			}
			if m.tls {
				o.PeerTLS = clientTLSConfig(t)
			}
			if mod != nil {
				mod(i, o)
			}
		}))
	}
	return out
}

// TestPeerPair: a client on each of two servers, one peering with the
// other: each gets the other's messages, over TLS and plain, the first
// one sent before the session was up (it arrives through the resync).
func TestPeerPair(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		ss := startPeered(t, m, [][]int{{1}, {}}, nil)
		a := ss[0].join(t, "a", "pair")
		b := ss[1].join(t, "b", "pair")
		a.mustSend(t, ws.OpText, []byte("first from a"))
		b.recvUntil(t, ws.OpText, "first from a")
		b.mustSend(t, ws.OpText, []byte("from b"))
		a.recvUntil(t, ws.OpText, "from b")
		a.mustSend(t, ws.OpBinary, []byte("binary from a"))
		b.recvUntil(t, ws.OpBinary, "binary from a")
	})
}

// checkAllOnce has every client send n numbered messages at once and
// checks that every client receives every other client's exactly once, in
// each sender's order, and none of its own. clients[i] is named names[i].
// It returns what each client received, in order (join frames left out).
func checkAllOnce(t *testing.T, clients []*rawClient, names []string, n int) [][]string {
	t.Helper()
	type result struct {
		seq []string
		err error
	}
	res := make([]chan result, len(clients))
	for i, c := range clients {
		res[i] = make(chan result, 1)
		go func() {
			var seq []string
			next := map[string]int{}
			want := (len(clients) - 1) * n
			for len(seq) < want {
				msg, err := c.recv(30 * time.Second)
				if err != nil {
					res[i] <- result{err: fmt.Errorf("%s: after %d of %d: %v (next %v)", names[i], len(seq), want, err, next)}
					return
				}
				var from string
				var k int
				if _, err := fmt.Sscanf(string(msg.data), "%s %d", &from, &k); err != nil || msg.op != ws.OpText {
					continue // a stored join frame
				}
				switch {
				case from == names[i]:
					res[i] <- result{err: fmt.Errorf("%s got its own message %d", names[i], k)}
					return
				case k != next[from]:
					res[i] <- result{err: fmt.Errorf("%s: from %s got %d, want %d (before it: %q)", names[i], from, k, next[from], seq[max(0, len(seq)-8):])}
					return
				}
				next[from]++
				seq = append(seq, string(msg.data))
			}
			res[i] <- result{seq: seq}
		}()
	}
	for i, c := range clients {
		go func() {
			for k := range n {
				if err := c.send(ws.OpText, fmt.Appendf(nil, "%s %d", names[i], k)); err != nil {
					return
				}
			}
		}()
	}
	seqs := make([][]string, len(clients))
	for i := range clients {
		r := <-res[i]
		if r.err != nil {
			t.Fatal(r.err)
		}
		seqs[i] = r.seq
	}
	// Nothing more: a duplicate would be next.
	for i, c := range clients {
		if msg, err := c.recv(200 * time.Millisecond); err == nil {
			t.Fatalf("%s: one more message after all: %q", names[i], msg.data)
		}
	}
	return seqs
}

// TestPeerTopologies: a full mesh of three servers and a chain of three
// (the middle one with no --peer of its own), two clients on each: every
// client gets every other client's messages exactly once, each sender's
// in order.
func TestPeerTopologies(t *testing.T) {
	for _, tc := range []struct {
		name     string
		links    [][]int
		sessions []int64 // per server, once redundant ones are closed
	}{
		{"mesh", [][]int{{1, 2}, {0, 2}, {0, 1}}, []int64{2, 2, 2}},
		{"chain", [][]int{{1}, {}, {1}}, []int64{1, 2, 1}},
		{"ring-of-one-way", [][]int{{1}, {2}, {0}}, []int64{2, 2, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ss := startPeered(t, modes[1], tc.links, func(_ int, o *server.Options) { o.History = 5000 })
			var clients []*rawClient
			var names []string
			for i, ts := range ss {
				for j := range 2 {
					name := fmt.Sprintf("c%d.%d", i, j)
					clients = append(clients, ts.join(t, name, "topo"))
					names = append(names, name)
				}
			}
			checkAllOnce(t, clients, names, 300)
			// Each server accepted every message of the others' clients
			// once; in a mesh, the second copy of each was dropped.
			var dups uint64
			for i, ts := range ss {
				m := ts.Metrics(context.Background())
				if want := uint64(len(clients)-2) * 300; m.PeerIn != want {
					t.Errorf("server %d accepted %d messages from peers, want %d", i, m.PeerIn, want)
				}
				if m.PeerSessions == 0 {
					t.Errorf("server %d counts no peer session", i)
				}
				dups += m.PeerDuplicates
			}
			if tc.name == "mesh" && dups == 0 {
				t.Error("a mesh dropped no duplicate: loop prevention was not exercised")
			}
			// One session per pair of servers: in the mesh, where both
			// dial, the larger id's closes.
			poll.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
				for i, ts := range ss {
					if n := ts.Metrics(context.Background()).PeerSessions; n != tc.sessions[i] {
						return fmt.Errorf("server %d has %d peer sessions, want %d", i, n, tc.sessions[i])
					}
				}
				return nil
			})
			// And over what is left, every message still reaches every
			// client once.
			var again []string
			for _, n := range names {
				again = append(again, n+"/2")
			}
			checkAllOnce(t, clients, again, 100)
		})
	}
}

// TestPeerRestartRefill: a server restarted without history is refilled
// from its peer: a client joining it after the restart receives what was
// sent before (once each, in order), and both sides go on exchanging. Its
// returning client talks at once: the joins wait for the refill, so its
// old messages (from the peer) still come before its new ones.
func TestPeerRestartRefill(t *testing.T) {
	fast := func(_ int, o *server.Options) {
		o.History = 1000
		o.PeerRetry, o.PeerRetryMax = 20*time.Millisecond, 200*time.Millisecond
	}
	ss := startPeered(t, modes[1], [][]int{{1}, {0}}, fast)
	a := ss[0].join(t, "a", "refill")
	b := ss[1].join(t, "b", "refill")
	checkAllOnce(t, []*rawClient{a, b}, []string{"a", "b"}, 100)

	addr := ss[1].addr
	b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ss[1].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	nb := startServer(t, modes[1], func(o *server.Options) {
		o.Addr = addr
		o.ServerID = "s1"
		o.Peers = []string{"ws://" + ss[0].addr + "/"}
		fast(1, o)
	})
	bb := nb.join(t, "b", "refill")
	for k := 100; k < 150; k++ {
		bb.mustSend(t, ws.OpText, fmt.Appendf(nil, "b %d", k))
	}
	b2 := nb.join(t, "b2", "refill")
	// The history b2 gets comes from a, through the resync: a's 100 and
	// b's 100, each once and in order; then b's new 50.
	expectNumbered(t, b2, map[string]int{"a": 100, "b": 150})
	a.recvUntil(t, ws.OpText, "b 149")
	bb.Close()
	checkAllOnce(t, []*rawClient{a, b2}, []string{"a2", "b2"}, 100)
}

// TestPeerRestartWithHistory: a server that restarts with its history on
// disk resyncs with its peer by ids: the peer sends only what it lacks, so
// a joiner after the restart replays every message once.
func TestPeerRestartWithHistory(t *testing.T) {
	dir := t.TempDir()
	mod := func(i int, o *server.Options) {
		o.History = 1000
		o.PeerRetry, o.PeerRetryMax = 20*time.Millisecond, 200*time.Millisecond
		if i == 1 {
			o.HistoryDir, o.HistorySync = dir, "always"
		}
	}
	ss := startPeered(t, modes[1], [][]int{{1}, {0}}, mod)
	a := ss[0].join(t, "a", "disk")
	b := ss[1].join(t, "b", "disk")
	checkAllOnce(t, []*rawClient{a, b}, []string{"a", "b"}, 100)
	b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ss[1].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// a talks on while b's server is down.
	for k := 100; k < 150; k++ {
		a.mustSend(t, ws.OpText, fmt.Appendf(nil, "a %d", k))
	}
	nb := startServer(t, modes[1], func(o *server.Options) {
		o.Addr = ss[1].addr
		o.ServerID = "s1"
		o.Peers = []string{"ws://" + ss[0].addr + "/"}
		mod(1, o)
	})
	b2 := nb.join(t, "b2", "disk")
	expectNumbered(t, b2, map[string]int{"a": 150, "b": 100})
	if msg, err := b2.recv(300 * time.Millisecond); err == nil {
		t.Fatalf("one more after the history: %q", msg.data)
	}
	if d := nb.Metrics(ctx).PeerIn; d != 50 {
		t.Errorf("the restarted server accepted %d messages from its peer, want the 50 it missed", d)
	}
}

// TestPeerDown: a peer that is not there holds no joiner: the dial fails,
// the join goes on at once, and local members talk; a joiner that leaves
// while held leaves nothing behind.
func TestPeerDown(t *testing.T) {
	dead := mlestest.FreePort(t) // nothing listens there
	ts := startServer(t, modes[1], func(o *server.Options) {
		o.Peers = []string{fmt.Sprintf("ws://127.0.0.1:%d/", dead)}
		o.PeerRetry, o.PeerRetryMax = 50*time.Millisecond, 100*time.Millisecond
	})
	start := time.Now()
	a := ts.join(t, "a", "down")
	b := ts.join(t, "b", "down")
	exchange(t, []*rawClient{a, b}, "down")
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("joins with the peer down took %v", d)
	}
	a.Close()
	b.Close()
	ts.waitMembers(t, 0)
	ts.waitConns(t, 0)
}

// expectNumbered reads c until it has each sender's messages "sender k"
// for k below want[sender], once each and in order (stored join frames
// skipped).
func expectNumbered(t *testing.T, c *rawClient, want map[string]int) {
	t.Helper()
	next := map[string]int{}
	done := func() bool {
		for from, n := range want {
			if next[from] < n {
				return false
			}
		}
		return true
	}
	for !done() {
		msg, err := c.recv(30 * time.Second)
		if err != nil {
			t.Fatalf("got %v of %v: %v", next, want, err)
		}
		var from string
		var k int
		if _, err := fmt.Sscanf(string(msg.data), "%s %d", &from, &k); err != nil {
			continue
		}
		if k != next[from] {
			t.Fatalf("from %s got %d, want %d: a duplicate, a gap or out of order", from, k, next[from])
		}
		next[from]++
	}
}

// TestPeerUnlink: the session to a peer lives while the channel has local
// members: the last one leaving closes it on both sides, and a new member
// opens it again.
func TestPeerUnlink(t *testing.T) {
	ss := startPeered(t, modes[1], [][]int{{1}, {}}, nil)
	sessions := func(want ...int64) {
		t.Helper()
		poll.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
			for i, ts := range ss {
				if n := ts.Metrics(context.Background()).PeerSessions; n != want[i] {
					return fmt.Errorf("server %d has %d peer sessions, want %d", i, n, want[i])
				}
			}
			return nil
		})
	}
	a := ss[0].join(t, "a", "unlink")
	sessions(1, 1)
	a.Close()
	sessions(0, 0)
	ss[0].waitConns(t, 0)
	ss[1].waitConns(t, 0)
	a2 := ss[0].join(t, "a2", "unlink")
	b := ss[1].join(t, "b", "unlink")
	sessions(1, 1)
	exchange(t, []*rawClient{a2, b}, "again")
}

// TestPeerHoldBounds: a peer that accepts the connection and never answers
// holds joiners for peerSyncWait at most: then they join, and what one
// sent while held (under the bound) reaches the others; one that sends
// more than the bound (1 MiB) while held is closed with 1008.
func TestPeerHoldBounds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // a peer that says nothing
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	ts := startServer(t, modes[1], func(o *server.Options) {
		o.Peers = []string{"ws://" + ln.Addr().String() + "/"}
		o.MaxMessage = 64 << 10
	})
	start := time.Now()
	a := ts.join(t, "a", "hold")
	big := ts.join(t, "big", "hold")
	a.mustSend(t, ws.OpText, []byte("sent while held"))
	chunk := bytes.Repeat([]byte("x"), 60<<10)
	for range 20 { // 1.2 MiB: past the bound
		if err := big.send(ws.OpBinary, chunk); err != nil {
			break
		}
	}
	big.expectClose(t, ws.StatusPolicyViolation, 10*time.Second)
	b := ts.join(t, "b", "hold")
	b.recvUntil(t, ws.OpText, "sent while held")
	if d := time.Since(start); d < 4*time.Second || d > 15*time.Second {
		t.Fatalf("the held joins went on after %v, want about 5 s (the peer never answered)", d)
	}
}
