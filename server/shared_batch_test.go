package server_test

// The shared batch: members of a loop's group at one cursor get the same
// frames, copied from the ring once per drain (group.drain, group.share).
// What it must never change: a member never gets its own messages (the
// shared frames are everyone's), nobody gets a message twice or out of
// order, and members that are elsewhere (behind after a pause, replaying
// history, in the middle of a large frame) drain on their own and rejoin
// the shared batch later without a gap.

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/server"
)

func TestSharedBatch(t *testing.T) {
	forModesReactors(t, func(t *testing.T, m mode, reactors int) {
		const (
			members    = 24
			publishers = 6 // members 0..5 publish, the others only read
			perPub     = 300
			burst      = 10 // messages per write, so drains see several
			largeEvery = 50 // every 50th message is >= copyMax (8 KiB)
			laggard    = 23 // stops reading for a while mid-stream
			pauseFor   = 300 * time.Millisecond
		)
		ts := startServer(t, m, func(o *server.Options) {
			o.Reactors = reactors
			o.RingSize = 4096 // above all the messages: nobody is lapped, the laggard included
		})
		clients := make([]*rawClient, members)
		for i := range clients {
			clients[i] = ts.join(t, fmt.Sprintf("m%02d", i), "shared")
			t.Cleanup(func() { clients[i].Close() })
		}
		ts.waitMembers(t, members)

		size := func(pub byte, seq uint32) int {
			if seq%largeEvery == largeEvery-1 {
				return 10 << 10
			}
			return 5 + int(seq*37+uint32(pub)*11)%200
		}
		var wg sync.WaitGroup
		errs := make(chan error, members+publishers)
		for i := range members {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := clients[i]
				want := (publishers - 1) * perPub
				if i >= publishers {
					want = publishers * perPub
				}
				next := make([]uint32, publishers)
				for got := 0; got < want; got++ {
					if i == laggard && got == want/3 {
						time.Sleep(pauseFor) // fall behind the others' cursor
					}
					msg, err := c.recvData(30 * time.Second)
					if err != nil {
						errs <- fmt.Errorf("member %d after %d messages: %v", i, got, err)
						return
					}
					pub, seq, ok := parseSeq(msg.data)
					switch {
					case !ok || int(pub) >= publishers || len(msg.data) != size(pub, seq):
						errs <- fmt.Errorf("member %d: corrupt message of %d bytes", i, len(msg.data))
						return
					case int(pub) == i:
						errs <- fmt.Errorf("member %d got its own message %d", i, seq)
						return
					case seq != next[pub]:
						errs <- fmt.Errorf("member %d: publisher %d's message %d, want %d (a gap, a repeat or out of order)", i, pub, seq, next[pub])
						return
					}
					next[pub]++
				}
			}()
		}
		for p := range publishers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for seq := uint32(0); seq < perPub; seq += burst {
					var batch [][]byte
					for s := seq; s < seq+burst; s++ {
						batch = append(batch, seqPayload(byte(p), s, size(byte(p), s)))
					}
					if err := clients[p].sendBatch(ws.OpBinary, batch); err != nil {
						errs <- fmt.Errorf("publisher %d: %v", p, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		// Nothing more arrives: no member got a repeat at the end either.
		for i, c := range clients {
			if msg, err := c.recvData(50 * time.Millisecond); err == nil {
				t.Errorf("member %d: an extra message of %d bytes after all of them", i, len(msg.data))
			}
		}
	})
}

// TestSharedBatchOwnMessages makes two members publish in the same poll
// round of one loop: the second one's cursor is then at the group's common
// cursor with its own message inside the shared frames, and it must get
// the other's message and not its own.
func TestSharedBatchOwnMessages(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		const rounds = 20
		ts := startServer(t, m, func(o *server.Options) { o.Reactors = 1 })
		a := ts.join(t, "a", "own")
		b := ts.join(t, "b", "own")
		r := ts.join(t, "r", "own")
		for _, c := range []*rawClient{a, b, r} {
			t.Cleanup(func() { c.Close() })
		}
		ts.waitMembers(t, 3)
		for i := range rounds {
			release := ts.HoldLoops()
			a.mustSend(t, ws.OpText, fmt.Appendf(nil, "a%d", i))
			b.mustSend(t, ws.OpText, fmt.Appendf(nil, "b%d", i))
			release()
			a.expectData(t, ws.OpText, fmt.Sprintf("b%d", i))
			b.expectData(t, ws.OpText, fmt.Sprintf("a%d", i))
			var got []string
			for range 2 {
				msg, err := r.recvData(shortWait)
				if err != nil {
					t.Fatalf("round %d: reader: %v", i, err)
				}
				got = append(got, string(msg.data))
			}
			if !(got[0] == fmt.Sprintf("a%d", i) && got[1] == fmt.Sprintf("b%d", i) ||
				got[0] == fmt.Sprintf("b%d", i) && got[1] == fmt.Sprintf("a%d", i)) {
				t.Fatalf("round %d: the reader got %q", i, got)
			}
		}
		// Nothing else is queued for anyone: a pong after an empty stream.
		for name, c := range map[string]*rawClient{"a": a, "b": b, "r": r} {
			if skipped, err := c.barrier(shortWait); err != nil || skipped != 0 {
				t.Fatalf("%s: %d more messages (%v)", name, skipped, err)
			}
		}
	})
}
