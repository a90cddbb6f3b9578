package server_test

// Byte caps on history (SPEC 1.4 [beyond], DESIGN "Fan-out"): they cut
// history only. A message a live member has not read yet is never evicted,
// so a full global budget or a burst larger than the caps never closes a
// healthy member, and a joiner's own join frame never evicts the history it
// is about to replay.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/server"
)

// expectSeqs reads n data messages (stored join frames skipped) and
// asserts they are seqPayload(pub, first..first+n-1, size), in order.
func expectSeqs(t testing.TB, who string, c *rawClient, pub byte, first, n, size int) {
	t.Helper()
	for i := range n {
		want := first + i
		msg, err := c.recvData(shortWait)
		if err != nil {
			t.Fatalf("%s: waiting for message %d (got %d of %d): %v", who, want, i, n, err)
		}
		p, seq, ok := parseSeq(msg.data)
		if !ok || p != pub || len(msg.data) != size {
			t.Fatalf("%s: message %d: corrupt payload of %d bytes %q", who, want, len(msg.data), trunc(msg.data))
		}
		if int(seq) != want {
			t.Fatalf("%s: got message %d where %d was due (first gap after %d)", who, seq, want, want-1)
		}
	}
}

// expectAlive checks that two members of a channel still talk both ways
// and that the server closed no one as a slow consumer since slowBefore
// and counts members members.
func expectAlive(t testing.TB, ts *testServer, a, b *rawClient, slowBefore, members int64) {
	t.Helper()
	b.mustSend(t, ws.OpText, []byte("b to a"))
	if m, err := a.recvData(shortWait); err != nil || string(m.data) != "b to a" {
		t.Fatalf("publisher after the burst: got %q, %v; want the reply (was it closed?)", trunc(m.data), err)
	}
	a.mustSend(t, ws.OpText, []byte("a to b"))
	if m, err := b.recvData(shortWait); err != nil || string(m.data) != "a to b" {
		t.Fatalf("subscriber after the burst: got %q, %v", trunc(m.data), err)
	}
	s := ts.Stats()
	if s.SlowConsumers != slowBefore {
		t.Fatalf("Stats().SlowConsumers = %d, was %d: a healthy member was closed as slow", s.SlowConsumers, slowBefore)
	}
	if s.Members != members {
		t.Fatalf("Stats().Members = %d, want %d", s.Members, members)
	}
}

// TestByteCapBudgetFull: another channel fills the global history
// budget, then a publisher sends two messages in one write to a channel
// with one subscriber. Evicting the first message to make room for the
// second would evict a message the subscriber has not read: the subscriber
// must get both, and nobody is closed as a slow consumer.
func TestByteCapBudgetFull(t *testing.T) {
	const (
		budget = 64 << 10
		size   = 1 << 10
		fill   = 70 // messages of size bytes: more than the budget
	)
	forModesReactors(t, func(t *testing.T, m mode, reactors int) {
		ts := startServer(t, m, func(o *server.Options) {
			o.Reactors = reactors
			o.HistoryTotalBytes = budget
		})
		// One message per write, each acknowledged, so that the filler's
		// own cursor is always past what its publishes evict.
		filler := ts.joinSeq(t, "filler", "full")
		for i := range fill {
			filler.mustSend(t, ws.OpBinary, seqPayload(1, uint32(i), size))
			filler.mustBarrier(t)
		}

		const ch = "edge"
		a := ts.joinSeq(t, "alice", ch)
		b := ts.joinSeq(t, "bob", ch)
		slowBefore := ts.Stats().SlowConsumers
		if err := a.sendBatch(ws.OpBinary, [][]byte{seqPayload(0, 0, size), seqPayload(0, 1, size)}); err != nil {
			t.Fatalf("publish: %v", err)
		}
		expectSeqs(t, "bob", b, 0, 0, 2, size)
		expectAlive(t, ts, a, b, slowBefore, 3)
	})
}

// TestByteCapBurst: one member sends more than the global budget in one
// write; the other member must receive all of it in order, and neither is
// closed. 256 KiB rather than just over the budget: the server reads a
// write in chunks, and with a burst of 80 KiB the subscriber's loop
// sometimes drained between two chunks, so the old code passed by luck.
func TestByteCapBurst(t *testing.T) {
	const (
		budget = 64 << 10
		size   = 1 << 10
		burst  = 256 // 256 KiB in one write
	)
	forModesReactors(t, func(t *testing.T, m mode, reactors int) {
		ts := startServer(t, m, func(o *server.Options) {
			o.Reactors = reactors
			o.HistoryTotalBytes = budget
		})
		const ch = "burst"
		a := ts.joinSeq(t, "alice", ch)
		b := ts.joinSeq(t, "bob", ch)
		slowBefore := ts.Stats().SlowConsumers
		msgs := make([][]byte, burst)
		for i := range msgs {
			msgs[i] = seqPayload(0, uint32(i), size)
		}
		if err := a.sendBatch(ws.OpBinary, msgs); err != nil {
			t.Fatalf("publish: %v", err)
		}
		expectSeqs(t, "bob", b, 0, 0, burst, size)
		expectAlive(t, ts, a, b, slowBefore, 2)
	})
}

// TestHistoryBytesJoinFrame: with a per-channel byte cap, the joiner's
// own join frame (appended to history when it joins, SPEC 1.4) must not
// evict the history the joiner is about to replay. Ten messages of 98-byte
// frames fit in HistoryBytes 1000 and are all replayed; so is a single
// message whose frame is exactly HistoryBytes long.
func TestHistoryBytesJoinFrame(t *testing.T) {
	const historyBytes = 1000
	forModes(t, func(t *testing.T, m mode) {
		// One server per case, so that member counts are the case's own.
		start := func(t *testing.T) *testServer {
			return startServer(t, m, func(o *server.Options) {
				o.History = 200
				o.HistoryBytes = historyBytes
			})
		}
		// payload of n bytes starting with tag and padded with '.'.
		payload := func(tag string, n int) []byte {
			return []byte(tag + strings.Repeat(".", n-len(tag)))
		}

		t.Run("ten", func(t *testing.T) {
			ts := start(t)
			const ch = "ten"
			pub := ts.joinSeq(t, "pub", ch)
			// A server frame of a 96-byte payload is 98 bytes (2-byte
			// header, RFC 6455 5.2): ten of them take 980 of the 1000.
			for i := range 10 {
				pub.mustSend(t, ws.OpText, payload(fmt.Sprintf("m%d", i), 96))
			}
			pub.mustBarrier(t)
			members := ts.Stats().Members
			j := ts.join(t, "joiner", ch)
			for i := range 10 {
				want := payload(fmt.Sprintf("m%d", i), 96)
				got, err := j.recvData(shortWait)
				if err != nil {
					t.Fatalf("joiner: history message %d: %v", i, err)
				}
				if string(got.data) != string(want) {
					t.Fatalf("joiner: history message %d is %q, want %q (first gap: m%d missing)",
						i, trunc(got.data), trunc(want), i)
				}
			}
			ts.waitMembers(t, members+1)
			pub.mustSend(t, ws.OpText, []byte("live"))
			j.expectData(t, ws.OpText, "live")
		})

		t.Run("exact", func(t *testing.T) {
			ts := start(t)
			const ch = "exact"
			pub := ts.joinSeq(t, "pub", ch)
			// 4-byte header (payload 126..65535) + 996 = 1000 bytes.
			big := payload("whole", historyBytes-4)
			pub.mustSend(t, ws.OpBinary, big)
			pub.mustBarrier(t)
			members := ts.Stats().Members
			j := ts.join(t, "joiner", ch)
			ts.waitMembers(t, members+1)
			pub.mustSend(t, ws.OpText, []byte("live"))
			got, err := j.recvData(shortWait)
			if err != nil {
				t.Fatalf("joiner: %v", err)
			}
			if got.op != ws.OpBinary || string(got.data) != string(big) {
				t.Fatalf("joiner's first delivery is %v %q, want the %d-byte history message (frame exactly HistoryBytes)",
					got.op, trunc(got.data), len(big))
			}
			j.expectData(t, ws.OpText, "live")
		})
	})
}

// TestSmallCapsLargeFrames: history caps far below one frame (4 KiB per
// channel, 16 KiB in all) and 8 KiB frames, 300 of them, to a member that
// stops reading until the publisher is done and a fast member has every
// message. The caps cut history only: the paused member, within its grace
// period and ring, then reads all 300 in order and is not closed.
func TestSmallCapsLargeFrames(t *testing.T) {
	const (
		size     = 8 << 10
		messages = 300 // 2.4 MiB: far past both caps and MaxPending
	)
	forModesReactors(t, func(t *testing.T, m mode, reactors int) {
		ts := startServer(t, m, func(o *server.Options) {
			o.Reactors = reactors
			o.HistoryBytes = 4 << 10
			o.HistoryTotalBytes = 16 << 10
			o.MaxPending = 64 << 10
			o.SlowGrace = time.Minute // paused, not slow: it resumes well before
		})
		const ch = "small-caps"
		pub := ts.joinSeq(t, "pub", ch)
		fast := ts.joinSeq(t, "fast", ch)
		paused, err := ts.joinErr("paused", ch, dialConfig{rcvBuf: 4096})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { paused.Close() })
		ts.waitMembers(t, 3)
		slowBefore := ts.Stats().SlowConsumers

		done := make(chan error, 1)
		go func() {
			for i := range messages {
				if err := pub.send(ws.OpBinary, seqPayload(1, uint32(i), size)); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		expectSeqs(t, "fast", fast, 1, 0, messages, size)
		if err := <-done; err != nil {
			t.Fatalf("publish: %v", err)
		}
		if s := ts.Stats(); s.Members != 3 || s.SlowConsumers != slowBefore {
			t.Fatalf("after the burst: Stats %+v, want 3 members and no slow consumer", s)
		}
		expectSeqs(t, "paused", paused, 1, 0, messages, size)
		expectAlive(t, ts, pub, paused, slowBefore, 3)
	})
}
