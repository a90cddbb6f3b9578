package server_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/internal/natstest"
	"github.com/mles/mles/internal/poll"
	"github.com/mles/mles/server"
)

// startOnNATS starts n servers joined to the NATS server at url.
func startOnNATS(t *testing.T, m mode, n int, url string, mod func(o *server.Options)) []*testServer {
	t.Helper()
	var out []*testServer
	for i := range n {
		out = append(out, startServer(t, m, func(o *server.Options) {
			o.ServerID = fmt.Sprintf("s%d", i)
			o.NATS = []string{url}
			if mod != nil {
				mod(o)
			}
		}))
	}
	return out
}

// TestNATSPair: a client on each of two servers on one NATS: each gets
// the other's messages (text and binary) and never its own; a client
// joining later on the first server gets the channel's history in the
// stream's order: join frames and messages from both servers.
func TestNATSPair(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		nt := natstest.Node(t)
		ss := startOnNATS(t, m, 2, nt.URL(), nil)
		a := ss[0].join(t, "a", "pair.*>")
		b := ss[1].join(t, "b", "pair.*>")
		a.mustSend(t, ws.OpText, []byte("from a"))
		b.recvUntil(t, ws.OpText, "from a")
		b.mustSend(t, ws.OpBinary, []byte("from b"))
		a.recvUntil(t, ws.OpBinary, "from b")
		a.mustSend(t, ws.OpText, []byte("again a"))
		b.recvUntil(t, ws.OpText, "again a")
		if msg, err := a.recv(300 * time.Millisecond); err == nil {
			t.Fatalf("a got %q: its own message back, or a duplicate", msg.data)
		}
		c := ss[0].join(t, "c", "pair.*>")
		var msgs, joins []string
		for len(msgs) < 3 || len(joins) < 2 {
			m := string(c.mustRecv(t).data)
			if strings.HasPrefix(m, "{") {
				joins = append(joins, m)
				continue
			}
			if !slices.Contains(joins, `{"uid":"a","channel":"pair.*>"}`) {
				t.Fatalf("%q before a's join frame (joins %q)", m, joins)
			}
			msgs = append(msgs, m)
		}
		// The messages in the stream's order; b's join frame where the
		// stream has it (before or after a's first message: the two
		// servers published them at about the same time).
		slices.Sort(joins)
		if want := []string{"from a", "from b", "again a"}; !slices.Equal(msgs, want) {
			t.Fatalf("history: got %q, want %q", msgs, want)
		}
		if want := []string{`{"uid":"a","channel":"pair.*>"}`, `{"uid":"b","channel":"pair.*>"}`}; !slices.Equal(joins, want) {
			t.Fatalf("history: join frames %q, want %q", joins, want)
		}
	})
}

// TestNATSOneOrder: three servers on one NATS, two clients on each, each
// client sends 200 numbered messages at once: every client gets every
// other client's exactly once and none of its own, and all of them see
// the messages in the same order.
func TestNATSOneOrder(t *testing.T) {
	nt := natstest.Node(t)
	ss := startOnNATS(t, mode{"plain", false}, 3, nt.URL(), nil)
	var clients []*rawClient
	var names []string
	for i, s := range ss {
		for j := range 2 {
			name := fmt.Sprintf("c%d%d", i, j)
			clients = append(clients, s.join(t, name, "order"))
			names = append(names, name)
		}
		s.waitMembers(t, 2) // joined, not held: all of them get everything
	}
	checkOneOrder(t, clients, names, 200)
}

// checkOneOrder is checkAllOnce, and for any two clients the messages
// both got (neither's own) came in the same order.
func checkOneOrder(t *testing.T, clients []*rawClient, names []string, n int) {
	t.Helper()
	seqs := checkAllOnce(t, clients, names, n)
	for i := range seqs {
		for j := i + 1; j < len(seqs); j++ {
			drop := func(s string) bool {
				return strings.HasPrefix(s, names[i]+" ") || strings.HasPrefix(s, names[j]+" ")
			}
			a := slices.DeleteFunc(slices.Clone(seqs[i]), drop)
			b := slices.DeleteFunc(slices.Clone(seqs[j]), drop)
			if k := firstDiff(a, b); k >= 0 {
				t.Fatalf("%s and %s see different orders: at %d %q vs %q", names[i], names[j], k, a[k], b[k])
			}
		}
	}
}

func firstDiff(a, b []string) int {
	for k := range min(len(a), len(b)) {
		if a[k] != b[k] {
			return k
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// TestNATSNewServerHistory: a server that starts after the talk (or
// restarts: its memory is empty) needs no warm-up: its first joiner gets
// the channel's history from the stream, then live messages, no gap and
// no duplicate.
func TestNATSNewServerHistory(t *testing.T) {
	nt := natstest.Node(t)
	a := startOnNATS(t, mode{"plain", false}, 1, nt.URL(), nil)[0]
	ca := a.join(t, "a", "late")
	for k := range 10 {
		ca.mustSend(t, ws.OpText, fmt.Appendf(nil, "a %d", k))
	}
	waitAcked(t, a, 11) // a's join frame and 10 messages are in the stream
	b := startOnNATS(t, mode{"plain", false}, 1, nt.URL(), nil)[0]
	cb := b.join(t, "b", "late")
	ca.mustSend(t, ws.OpText, []byte("a 10"))
	if m := cb.mustRecv(t); string(m.data) != `{"uid":"a","channel":"late"}` {
		t.Fatalf("first in history: %q, want a's join frame", m.data)
	}
	expectNumbered(t, cb, map[string]int{"a": 11})
	if msg, err := cb.recv(300 * time.Millisecond); err == nil {
		t.Fatalf("one more message: %q", msg.data)
	}
}

// TestNATSOutage: while NATS is down, the members of one server keep
// talking among themselves; when it is back, what they said reaches the
// other server's members, and nobody gets a message twice.
func TestNATSOutage(t *testing.T) {
	nt := natstest.Node(t)
	ss := startOnNATS(t, mode{"plain", false}, 2, nt.URL(), nil)
	a1 := ss[0].join(t, "a1", "outage")
	a2 := ss[0].join(t, "a2", "outage")
	b := ss[1].join(t, "b", "outage")
	a1.mustSend(t, ws.OpText, []byte("a1 0"))
	a2.recvUntil(t, ws.OpText, "a1 0")
	b.recvUntil(t, ws.OpText, "a1 0")

	nt.Shutdown()
	waitNATS(t, ss[0], false)
	for k := 1; k <= 5; k++ {
		a1.mustSend(t, ws.OpText, fmt.Appendf(nil, "a1 %d", k))
	}
	expectRun(t, a2, "a1", 1, 6)
	nt.Restart()
	expectRun(t, b, "a1", 1, 6)
	b.mustSend(t, ws.OpText, []byte("b 0"))
	a1.recvUntil(t, ws.OpText, "b 0")
	a2.recvUntil(t, ws.OpText, "b 0")
	for _, c := range []*rawClient{a1, a2, b} {
		if msg, err := c.recv(300 * time.Millisecond); err == nil {
			t.Fatalf("one more message: %q", msg.data)
		}
	}
}

// waitNATS waits until the server's local messages go through the stream
// (through) or to its local members first (!through).
func waitNATS(t *testing.T, s *testServer, through bool) {
	t.Helper()
	poll.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := s.Metrics(context.Background()).NATS; n == nil || n.Through != through {
			return fmt.Errorf("NATS through the stream: want %v, have %+v", through, n)
		}
		return nil
	})
}

// waitAcked waits until JetStream acknowledged n of the server's publishes.
func waitAcked(t *testing.T, s *testServer, n int64) {
	t.Helper()
	poll.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if st := s.Metrics(context.Background()).NATS; st == nil || st.Acked < n {
			return fmt.Errorf("acknowledged: want %d, have %+v", n, st)
		}
		return nil
	})
}

// expectRun asserts that the next messages c gets, past stored join
// frames, are "from k" for k from k0 up to k1-1.
func expectRun(t *testing.T, c *rawClient, from string, k0, k1 int) {
	t.Helper()
	for k := k0; k < k1; {
		m, err := c.recv(30 * time.Second)
		if err != nil {
			t.Fatalf("waiting for %s %d: %v", from, k, err)
		}
		if strings.HasPrefix(string(m.data), "{") {
			continue // a stored join frame
		}
		if want := fmt.Sprintf("%s %d", from, k); string(m.data) != want {
			t.Fatalf("got %q, want %q", m.data, want)
		}
		k++
	}
}
