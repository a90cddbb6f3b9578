package server_test

// A live member that the ring laps (SPEC 1.6: "a member that falls further
// behind than the channel ring holds ... is closed with 1008 'slow
// consumer'"). The two places that detect it are both reached here with
// SlowGrace far away, so that only a lap can close the member:
//
//   - paused: the member stopped reading, its output is above MaxPending,
//     and more than a ring's worth of messages follow. The waiting list
//     (or the sweep) finds it lapped before its output even drains.
//   - burst: more than a ring's worth of small messages arrive in one
//     read, so the member's next drain finds its cursor overwritten.
//
// Either way the member gets a contiguous prefix of the messages, then
// 1008 "slow consumer", then the end of the connection: never a gap.

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/internal/poll"
	"github.com/mles/mles/server"
)

// lapRing is the ring's slot count with History <= 512: Validate makes it
// max(1024, 2*History), a power of two.
const lapRing = 1024

// readLapped reads a lapped member's stream to its end: data messages
// seqPayload(0, 0..n-1, size) in order (stored join frames skipped), then
// a close frame, then EOF. It returns n, and an error for a corrupt or
// cut frame, a gap, a close other than 1008 "slow consumer", or no close.
func readLapped(c *rawClient, size int) (int, error) {
	buf := make([]byte, size)
	next := 0
	for {
		h, p, err := c.frameInto(buf, 20*time.Second)
		if err != nil {
			if errors.Is(err, errMidFrame) {
				return next, fmt.Errorf("stream cut mid-frame after messages 0..%d: %v", next-1, err)
			}
			return next, fmt.Errorf("no close frame after messages 0..%d: %v", next-1, err)
		}
		switch h.OpCode {
		case ws.OpText:
			continue // a stored join frame
		case ws.OpBinary:
			if !h.Fin {
				return next, fmt.Errorf("fragmented delivery after messages 0..%d", next-1)
			}
			_, seq, ok := parseSeq(p)
			if !ok || len(p) != size {
				return next, fmt.Errorf("corrupt message of %d bytes after messages 0..%d", len(p), next-1)
			}
			if int(seq) != next {
				return next, fmt.Errorf("gap: after messages 0..%d got message %d (%d skipped without a close)",
					next-1, seq, int(seq)-next)
			}
			next++
		case ws.OpPing, ws.OpPong:
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(p)
			if code != ws.StatusPolicyViolation || reason != "slow consumer" {
				return next, fmt.Errorf("close %d %q after messages 0..%d, want 1008 \"slow consumer\"", code, reason, next-1)
			}
			if err := c.awaitEOF(10 * time.Second); err != nil {
				return next, fmt.Errorf("after the close frame: %v", err)
			}
			return next, nil
		default:
			return next, fmt.Errorf("unexpected frame opcode %v", h.OpCode)
		}
	}
}

// waitLeft waits until the server counts members memberships: the lapped
// member is gone, for whatever reason. f is called meanwhile to keep
// traffic flowing; it returns false once it has nothing more to send.
func waitLeft(t *testing.T, ts *testServer, members int64, d time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for ts.Stats().Members > members {
		if time.Now().After(deadline) {
			t.Fatalf("the member was not closed within %v (Stats %+v)", d, ts.Stats())
		}
		if !f() {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// TestLappedWhilePaused: a member that does not read (tiny receive
// buffer) is paused above MaxPending; the channel goes on with more than a
// ring's worth of messages, read by another member. SlowGrace is ten
// minutes, so the close can only come from the lap: 1008 "slow consumer",
// counted once, after a contiguous prefix shorter than what was published.
// The reading member gets every message in order and stays.
func TestLappedWhilePaused(t *testing.T) {
	const (
		size     = 1 << 10
		perWrite = 16
		ahead    = 256 // the publisher stays at most this far ahead of the reader
		maxSent  = 64 << 10
	)
	forModesReactors(t, func(t *testing.T, m mode, reactors int) {
		ts := startServer(t, m, func(o *server.Options) {
			o.Reactors = reactors
			o.History = 1
			o.MaxPending = 16 << 10
			o.SlowGrace = 10 * time.Minute // only a lap may close the member
			o.CloseLinger = 30 * time.Second
		})
		const ch = "lap-paused"
		pub := ts.joinSeq(t, "pub", ch)
		reader := ts.joinSeq(t, "reader", ch)
		slow, err := ts.joinErr("sloth", ch, dialConfig{rcvBuf: 4096})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { slow.Close() })
		ts.waitMembers(t, 3)
		slowBefore := ts.Stats().SlowConsumers

		// The reader checks every message in order, and counts them, up
		// to the text message "end".
		var got atomic.Int64
		readErr := make(chan error, 1)
		go func() {
			buf := make([]byte, size)
			for {
				h, p, err := reader.frameInto(buf, time.Minute)
				if err != nil {
					readErr <- fmt.Errorf("reader after %d messages: %v", got.Load(), err)
					return
				}
				switch h.OpCode {
				case ws.OpBinary:
				case ws.OpText:
					if string(p) == "end" {
						readErr <- nil
						return
					}
					continue // stored join frames
				case ws.OpClose:
					code, reason := ws.ParseCloseFrameData(p)
					readErr <- fmt.Errorf("reader closed %d %q after %d messages", code, reason, got.Load())
					return
				default:
					continue
				}
				n := got.Load()
				if seq, err := checkSeqFast(p, size); err != nil || int64(seq) != n {
					readErr <- fmt.Errorf("reader: message %d where %d was due (%v)", seq, n, err)
					return
				}
				got.Store(n + 1)
			}
		}()

		sent := 0
		batch := make([][]byte, 0, perWrite)
		waitLeft(t, ts, 2, 60*time.Second, func() bool {
			if sent >= maxSent || int64(sent)-got.Load() > ahead {
				select {
				case err := <-readErr:
					t.Fatal(err)
				default:
				}
				return false
			}
			batch = batch[:0]
			for k := range perWrite {
				batch = append(batch, seqPayload(0, uint32(sent+k), size))
			}
			if err := pub.sendBatch(ws.OpBinary, batch); err != nil {
				t.Fatalf("publish: %v", err)
			}
			sent += perWrite
			return true
		})
		if d := ts.Stats().SlowConsumers - slowBefore; d != 1 {
			t.Fatalf("member gone after %d messages, but %d slow consumers counted, want 1", sent, d)
		}

		n, err := readLapped(slow, size)
		if err != nil {
			t.Fatalf("lapped member (%d messages published): %v", sent, err)
		}
		t.Logf("lapped member: messages 0..%d of %d, then 1008 \"slow consumer\"", n-1, sent)
		if n+lapRing > sent {
			t.Fatalf("lapped member got %d of %d messages: not a ring's worth (%d) behind, so not lapped", n, sent, lapRing)
		}

		// The reader gets everything, in order, and stays a member.
		pub.mustSend(t, ws.OpText, []byte("end"))
		select {
		case err := <-readErr:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("reader got %d of %d messages and no end marker", got.Load(), sent)
		}
		if g := got.Load(); g != int64(sent) {
			t.Fatalf("reader got %d of %d messages", g, sent)
		}
		if s := ts.Stats(); s.Members != 2 || s.SlowConsumers-slowBefore != 1 {
			t.Fatalf("after the lap: Stats %+v, want 2 members and 1 slow consumer", s)
		}
	})
}

// TestLappedByBurst: a publisher on one loop writes thousands of 7-byte
// messages at once (several rings' worth in one read, and in one TLS
// record), while the member is on the other loop, whose drain runs when
// that loop gets to it: when it finds its next message overwritten, the
// member gets the messages before it, then 1008 "slow consumer". SlowGrace
// is ten minutes and MaxPending the default 4 MiB: nothing but the lap can
// close it. The member's loop is held while the publisher's loop reads
// the burst (HoldLoopsExcept), so the first burst laps it; should the
// publisher share the member's loop, the next burst comes from a new one.
// (On one loop a burst no longer laps a member whose output has room: its
// publisher's loop drains the group every half ring, TestRoundBurstNoLap.)
//
// Each burst comes from a new publisher, closed after it. The publisher
// itself is never closed: its own messages, which it is not sent, do not
// lap it (before, they did, and the server dropped the rest of its burst:
// the test then saw either a broken pipe or a "gap" that was only messages
// never published).
func TestLappedByBurst(t *testing.T) {
	const (
		size   = 5 // seqPayload's smallest: an 11-byte masked frame, 7 bytes from the server
		before = 10
		burst  = 4 * lapRing
		rounds = 50
	)
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, func(o *server.Options) {
			o.Reactors = 2
			o.History = 1
			o.SlowGrace = 10 * time.Minute // only a lap may close the member
			o.CloseLinger = 30 * time.Second
			o.ReadBufferCap = 256 << 10
		})
		const ch = "lap-burst"
		member := ts.joinSeq(t, "member", ch)
		pub := ts.joinSeq(t, "pub", ch)
		for i := range before {
			pub.mustSend(t, ws.OpBinary, seqPayload(0, uint32(i), size))
		}
		pub.mustBarrier(t)

		sent := before
		var frames bytes.Buffer
		for round := 0; ; round++ {
			if round == rounds {
				t.Fatalf("member not closed after %d bursts of %d messages (Stats %+v)", rounds, burst, ts.Stats())
			}
			if round > 0 {
				// With two reactors the member's loop may find the lap
				// after the last round's check: the new publisher's
				// barrier says its own join is counted, so one member
				// then means the member is gone.
				pub = ts.join(t, fmt.Sprintf("pub%d", round), ch)
				pub.mustBarrier(t)
				if ts.Stats().Members < 2 {
					pub.Close()
					t.Logf("member gone after %d bursts", round)
					break
				}
			}
			frames.Reset()
			for k := range burst {
				frames.Write(maskedFrame(ws.OpBinary, true, 0, seqPayload(0, uint32(sent+k), size)))
			}
			frames.Write(maskedFrame(ws.OpPing, true, 0, []byte("burst")))
			// The member's loop waits while the publisher's loop reads
			// and publishes the burst, so that it finds its next
			// message overwritten when it drains: the lap does not
			// depend on which loop the scheduler runs first. (When
			// the publisher landed on the member's loop, nothing is
			// held and that loop keeps the member up: the next round
			// tries again.)
			release, held := ts.HoldLoopsExcept(pub.conn.LocalAddr().String())
			if err := pub.write(frames.Bytes()); err != nil {
				release()
				t.Fatalf("round %d: publish: %v", round, err)
			}
			sent += burst
			// The pong says the server has read the whole burst.
			for {
				f, err := pub.nextFrame(30 * time.Second)
				if err != nil {
					t.Fatalf("round %d: publisher: no pong: %v", round, err)
				}
				if f.Header.OpCode == ws.OpClose {
					release()
					code, reason := ws.ParseCloseFrameData(f.Payload)
					t.Fatalf("round %d: the publisher was closed %d %q by its own burst", round, code, reason)
				}
				if f.Header.OpCode == ws.OpPong {
					break
				}
			}
			release()
			if held == 0 {
				t.Logf("round %d: the publisher shared the member's loop", round)
			}
			pub.Close()
			var members int64
			poll.CheckFor(t, 10*time.Second, 2*time.Millisecond, func() error {
				if members = ts.Stats().Members; members > 1 {
					return fmt.Errorf("round %d: Stats().Members = %d, want the member alone or nobody", round, members)
				}
				return nil
			})
			if members == 0 {
				t.Logf("member gone after %d bursts", round+1)
				break
			}
		}

		n, err := readLapped(member, size)
		if err != nil {
			t.Fatalf("lapped member (%d messages published): %v", sent, err)
		}
		t.Logf("lapped member: messages 0..%d of %d, then 1008 \"slow consumer\"", n-1, sent)
		// n may be below before: the server drains a member in a task
		// that gnet may run after its next read of the publisher (the
		// task queue is served among the socket events), so the first
		// burst can lap the member before the first messages went out.
		// What must hold is the above: a contiguous prefix, then 1008.
		if n+lapRing > sent {
			t.Fatalf("lapped member got %d of %d messages: not a ring's worth (%d) behind, so not lapped", n, sent, lapRing)
		}
	})
}

// TestRoundBurstNoLap: several publishers on one loop whose bytes all
// arrive before the loop reads any (the loop is held meanwhile), together
// more than a ring's worth. Each is read in its own callback of one poll
// round; the members' drain must not wait for the round's end, when the
// first messages would be gone: readers that keep up get every message,
// and nobody is closed.
func TestRoundBurstNoLap(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		const (
			publishers = 4
			perPub     = 400 // 1,600 in one round, ring of 1,024
			readers    = 3
		)
		ts := startServer(t, m, func(o *server.Options) {
			o.Reactors = 1
			o.History = 1
		})
		var pubs, subs []*rawClient
		for i := range publishers {
			c := ts.join(t, fmt.Sprintf("p%d", i), "round")
			t.Cleanup(func() { c.Close() })
			pubs = append(pubs, c)
		}
		for i := range readers {
			c := ts.join(t, fmt.Sprintf("r%d", i), "round")
			t.Cleanup(func() { c.Close() })
			subs = append(subs, c)
		}
		ts.waitMembers(t, publishers+readers)
		errs := make(chan error, readers+publishers)
		var wg sync.WaitGroup
		for i, c := range subs {
			wg.Go(func() {
				next := make([]uint32, publishers)
				for got := range publishers * perPub {
					msg, err := c.recvData(shortWait)
					if err != nil {
						errs <- fmt.Errorf("reader %d after %d messages: %v", i, got, err)
						return
					}
					pub, seq, ok := parseSeq(msg.data)
					if !ok || int(pub) >= publishers || seq != next[pub] {
						errs <- fmt.Errorf("reader %d: message %d of publisher %d, want %d", i, seq, pub, next[pub])
						return
					}
					next[pub]++
				}
			})
		}
		// The publishers read what the others send, or their output would
		// pile up; only that nothing breaks matters for them.
		for _, c := range pubs {
			wg.Go(func() {
				for range (publishers - 1) * perPub {
					if _, err := c.recvData(shortWait); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		release := ts.HoldLoops()
		for p, c := range pubs {
			batch := make([][]byte, perPub)
			for s := range batch {
				batch[s] = seqPayload(byte(p), uint32(s), 16)
			}
			if err := c.sendBatch(ws.OpBinary, batch); err != nil {
				release()
				t.Fatal(err)
			}
		}
		release()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if got := ts.Stats().SlowConsumers; got != 0 {
			t.Errorf("%d slow-consumer closes, want 0", got)
		}
	})
}
