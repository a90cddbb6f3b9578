package server_test

// Acceptance 2 (issue 2): history replay (SPEC 1.4) and a join racing a
// burst of publishes.

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/internal/poll"
	"github.com/mles/mles/server"
)

// expectJoinFrame asserts m is a stored join frame of uid on channel,
// delivered as text and re-encoded without auth (SPEC 1.3).
func expectJoinFrame(t testing.TB, m message, uid, channel string) {
	t.Helper()
	if m.op != ws.OpText {
		t.Fatalf("join frame delivered as %v, want text: %q", m.op, m.data)
	}
	var got map[string]any
	if err := json.Unmarshal(m.data, &got); err != nil {
		t.Fatalf("join frame %q: %v", m.data, err)
	}
	if _, ok := got["auth"]; ok {
		t.Fatalf("stored join frame leaks auth: %s", m.data)
	}
	if len(got) != 2 || got["uid"] != uid || got["channel"] != channel {
		t.Fatalf("join frame %s, want {\"uid\":%q,\"channel\":%q}", m.data, uid, channel)
	}
}

// TestHistory checks SPEC 1.4 with -l 3: a joiner gets exactly the last
// three messages, oldest first and with their types, then live traffic;
// stored join frames come as text without auth.
func TestHistory(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, func(o *server.Options) { o.History = 3 })
		const ch = "hist"
		p := ts.joinSeq(t, "pub", ch)
		w := ts.joinSeq(t, "witness", ch)
		// The witness's history is pub's join frame.
		expectJoinFrame(t, w.mustRecv(t), "pub", ch)

		op := func(i int) ws.OpCode {
			if i%2 == 0 {
				return ws.OpText
			}
			return ws.OpBinary
		}
		body := func(i int) string { return fmt.Sprintf("m%d", i) }
		for i := range 10 {
			p.mustSend(t, op(i), []byte(body(i)))
		}
		// The witness has them all: they are published and stored.
		for i := range 10 {
			w.expectMsg(t, op(i), body(i))
		}

		// alice joins with a (correct, no MLES_KEY) auth token: she gets
		// m7 m8 m9, then live m10, and nothing of her own join.
		alice := ts.join(t, "alice", ch, authToken("alice", ch, ""))
		for i := 7; i < 10; i++ {
			alice.expectMsg(t, op(i), body(i))
		}
		ts.waitMembers(t, 3)
		p.mustSend(t, op(10), []byte(body(10)))
		alice.expectMsg(t, op(10), body(10))
		w.expectMsg(t, op(10), body(10))

		// History is now m9, join(alice), m10. The join was not delivered
		// live: the witness's next delivery is a marker.
		p.mustSend(t, ws.OpText, []byte("marker"))
		w.expectMsg(t, ws.OpText, "marker")
		alice.expectMsg(t, ws.OpText, "marker")

		// History: join(alice), m10, marker.
		bob := ts.join(t, "bob", ch)
		expectJoinFrame(t, bob.mustRecv(t), "alice", ch)
		bob.expectMsg(t, op(10), body(10))
		bob.expectMsg(t, ws.OpText, "marker")
		ts.waitMembers(t, 4)
		alice.mustSend(t, ws.OpBinary, []byte("live"))
		bob.expectMsg(t, ws.OpBinary, "live")

		// History is kept when the channel empties (SPEC 1.4).
		for _, c := range []*rawClient{p, w, alice, bob} {
			c.Close()
		}
		ts.waitMembers(t, 0)
		carol := ts.join(t, "carol", ch)
		// The last three stored messages are marker, join(bob), live.
		carol.expectMsg(t, ws.OpText, "marker")
		expectJoinFrame(t, carol.mustRecv(t), "bob", ch)
		carol.expectMsg(t, ws.OpBinary, "live")
	})
}

// TestHistoryRace checks SPEC 1.3/1.4 ordering under load: publishers
// send 10,000 sequenced messages while a member joins mid-burst. Existing
// members get every message in one total order; the joiner's history plus
// live traffic is exactly a contiguous suffix of that order.
func TestHistoryRace(t *testing.T) {
	const (
		publishers = 4
		perPub     = 2500
		total      = publishers * perPub
		history    = 200
		joinAfter  = 3000
	)
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, func(o *server.Options) {
			o.History = history
			// The ring holds the whole burst: this test is about the
			// join, not about lapped readers.
			o.RingSize = 16384
		})
		const ch = "race"
		var pubs []*rawClient
		for i := range publishers {
			pubs = append(pubs, ts.join(t, fmt.Sprintf("pub%d", i), ch))
		}
		recvs := []*rawClient{ts.join(t, "r1", ch), ts.join(t, "r2", ch)}
		ts.waitMembers(t, publishers+2)

		type result struct {
			seq []uint64 // pub<<32 | seq, in arrival order
			err error
		}
		// collect reads n binary messages; text frames (stored joins in
		// history) are skipped.
		collect := func(c *rawClient, n int, progress *atomic.Int64) result {
			var r result
			for len(r.seq) < n {
				msg, err := c.recv(30 * time.Second)
				if err != nil {
					r.err = fmt.Errorf("after %d messages: %w", len(r.seq), err)
					return r
				}
				if msg.op != ws.OpBinary {
					continue
				}
				pub, seq, ok := parseSeq(msg.data)
				if !ok {
					r.err = fmt.Errorf("corrupt payload %x", msg.data)
					return r
				}
				r.seq = append(r.seq, uint64(pub)<<32|uint64(seq))
				if progress != nil {
					progress.Add(1)
				}
			}
			return r
		}

		var progress atomic.Int64
		results := make([]result, len(recvs))
		var wg sync.WaitGroup
		for i, c := range recvs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var p *atomic.Int64
				if i == 0 {
					p = &progress
				}
				results[i] = collect(c, total, p)
			}()
		}
		pubErr := make(chan error, publishers)
		var sent atomic.Int64
		for i, c := range pubs {
			go func() {
				for s := range perPub {
					// Paced (about 2 s for the burst) so that the join
					// lands in the middle of it.
					if s%25 == 24 {
						time.Sleep(20 * time.Millisecond)
					}
					if err := c.send(ws.OpBinary, seqPayload(byte(i), uint32(s), 24)); err != nil {
						pubErr <- fmt.Errorf("pub%d seq %d: %w", i, s, err)
						return
					}
					sent.Add(1)
				}
				pubErr <- nil
			}()
		}

		// Join mid-burst, when the publishers have written 30% of it.
		poll.CheckFor(t, 60*time.Second, time.Millisecond, func() error {
			if n := sent.Load(); n < joinAfter {
				return fmt.Errorf("%d messages sent", n)
			}
			return nil
		})
		atJoin := progress.Load()
		j := ts.join(t, "joiner", ch)
		// The joiner reads until the test has seen the channel's last
		// message (known once r1 is done) or fails.
		var (
			jmu  sync.Mutex
			jseq []uint64
			jerr error
		)
		go func() {
			for {
				msg, err := j.recv(30 * time.Second)
				if err != nil {
					jmu.Lock()
					jerr = fmt.Errorf("joiner after %d messages: %w", len(jseq), err)
					jmu.Unlock()
					return
				}
				if msg.op != ws.OpBinary {
					continue
				}
				pub, seq, ok := parseSeq(msg.data)
				jmu.Lock()
				if !ok {
					jerr = fmt.Errorf("joiner: corrupt payload %x", msg.data)
					jmu.Unlock()
					return
				}
				jseq = append(jseq, uint64(pub)<<32|uint64(seq))
				jmu.Unlock()
			}
		}()

		for range publishers {
			if err := <-pubErr; err != nil {
				t.Fatal(err)
			}
		}
		wg.Wait()
		if results[0].err == nil {
			lastMsg := results[0].seq[len(results[0].seq)-1]
			poll.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
				jmu.Lock()
				defer jmu.Unlock()
				if jerr != nil {
					return nil
				}
				if len(jseq) > 0 && jseq[len(jseq)-1] == lastMsg {
					return nil
				}
				return fmt.Errorf("joiner has %d messages, not yet the last one", len(jseq))
			})
		}
		jmu.Lock()
		jr := result{seq: jseq, err: jerr}
		jmu.Unlock()

		// Existing members: all 10,000, per publisher in order, and both
		// in the same total order.
		for i, r := range results {
			if r.err != nil {
				t.Fatalf("r%d: %v", i+1, r.err)
			}
			next := make([]uint32, publishers)
			for k, v := range r.seq {
				pub, seq := byte(v>>32), uint32(v)
				if int(pub) >= publishers || seq != next[pub] {
					t.Fatalf("r%d message %d: pub%d seq %d, want seq %d (loss, duplicate or reorder)", i+1, k, pub, seq, next[pub])
				}
				next[pub]++
			}
		}
		for k := range results[0].seq {
			if results[0].seq[k] != results[1].seq[k] {
				t.Fatalf("r1 and r2 differ at %d: no single total order", k)
			}
		}

		// Joiner: a contiguous suffix of the channel order, no gap between
		// history and live, holding the whole history window.
		if jr.err != nil {
			t.Fatal(jr.err)
		}
		order := results[0].seq
		n := len(jr.seq)
		if n > len(order) {
			t.Fatalf("joiner got %d messages, more than the %d published", n, len(order))
		}
		off := len(order) - n
		for k := range jr.seq {
			if jr.seq[k] != order[off+k] {
				t.Fatalf("joiner message %d is pub%d seq %d, channel order has pub%d seq %d there",
					k, byte(jr.seq[k]>>32), uint32(jr.seq[k]), byte(order[off+k]>>32), uint32(order[off+k]))
			}
		}
		if n <= history {
			t.Fatalf("joiner got %d messages, history is %d: the join did not race the burst (or live delivery after replay is broken)", n, history)
		}
		if int64(off) < atJoin-history {
			t.Fatalf("joiner starts at %d, but r1 had %d messages before it joined (history %d)", off, atJoin, history)
		}
		t.Logf("joiner joined when r1 had %d messages; got %d messages from channel position %d", atJoin, n, off)
	})
}
