package server_test

// --max-pending bounds a subscriber's pending output in bytes whatever the
// message size (SPEC 1.6, DESIGN "Fan-out": "large frames are written in
// slices from the ring's shared frame, never copied whole per subscriber").

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/internal/poll"
	"github.com/mles/mles/server"
)

// heapInUse returns the heap in use after a full collection.
func heapInUse() (inuse, alloc uint64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, ms.HeapAlloc
}

// TestLargeMessageMemory: one message of almost 16 MiB (the default
// --max-message) goes to 40 members that never read, with MaxPending 1 MiB.
// The process heap (server and clients share it) must grow by well under
// one copy of the message per member: the ring holds the message once, and
// each member's pending output stays near MaxPending.
func TestLargeMessageMemory(t *testing.T) {
	const (
		members = 40
		size    = 16<<20 - 64 // the frame's payload fits --max-message
		bound   = 100 << 20
	)
	for _, m := range largeMemoryModes {
		t.Run(m.name, func(t *testing.T) {
			ts := startServer(t, m, func(o *server.Options) {
				o.MaxPending = 1 << 20
				o.SlowGrace = 30 * time.Second // nobody is closed while we measure
			})
			const ch = "large"
			// The publisher's 16 MiB frame is built before the baseline and
			// kept alive to the end, so it is in both measurements.
			frame := maskedFrame(ws.OpBinary, true, 0, bytes.Repeat([]byte{0xA5}, size))
			pub := ts.joinSeq(t, "pub", ch)
			baseInuse, baseAlloc := heapInUse()

			for i := range members {
				c, err := ts.joinErr(fmt.Sprintf("stalled%02d", i), ch, dialConfig{rcvBuf: 4096})
				if err != nil {
					t.Fatalf("member %d: %v", i, err)
				}
				t.Cleanup(func() { c.Close() })
			}
			ts.waitMembers(t, members+1)

			start := time.Now()
			if err := pub.write(frame); err != nil {
				t.Fatalf("publish: %v", err)
			}
			pub.mustBarrier(t)
			published := time.Since(start)

			// Sample the live heap until it stops changing (five samples
			// 200 ms apart within 2 MiB of each other) or 20 s pass; stop
			// early once it is over the bound.
			var (
				peak, last uint64
				window     []uint64
				overAt     time.Duration // when a sample went over the bound
			)
			deadline := time.Now().Add(20 * time.Second)
			for {
				inuse, _ := heapInUse()
				last = inuse
				peak = max(peak, inuse)
				window = append(window, inuse)
				if len(window) > 5 {
					window = window[1:]
				}
				if len(window) == 5 && spread(window) < 2<<20 {
					break
				}
				if int64(inuse)-int64(baseInuse) > bound {
					overAt = time.Since(start)
					break
				}
				if time.Now().After(deadline) {
					t.Logf("heap still changing after 20 s: %v", window)
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			_, alloc := heapInUse()
			runtime.KeepAlive(frame)
			grow := int64(peak) - int64(baseInuse)
			t.Logf("%s: published in %v; heap in use %d MiB before the members joined, peak %d MiB, last %d MiB (%v after the publish): growth %d MiB (heap alloc %d -> %d MiB); bound %d MiB",
				m.name, published.Round(time.Millisecond), baseInuse>>20, peak>>20, last>>20, time.Since(start).Round(time.Millisecond),
				grow>>20, baseAlloc>>20, alloc>>20, bound>>20)
			if s := ts.Stats(); s.Members != members+1 || s.SlowConsumers != 0 {
				t.Errorf("Stats: Members %d (want %d), SlowConsumers %d (want 0)", s.Members, members+1, s.SlowConsumers)
			}
			if grow > bound {
				how := "and settled there"
				if overAt > 0 {
					how = fmt.Sprintf("at least: over the bound %v after the publish, where sampling stopped", overAt.Round(time.Millisecond))
				}
				t.Fatalf("heap grew by %d MiB (%s) for one %d-byte message to %d members with MaxPending 1 MiB; bound %d MiB",
					grow>>20, how, size, members, bound>>20)
			}
		})
	}
}

// largeMemoryModes are the modes TestLargeMessageMemory runs in.
// Plain first: it is the case the acceptance requires. TLS costs little
// more once pending output is bounded (about MaxPending encrypted per
// member); unbounded, it encrypts the whole message for every member.
var largeMemoryModes = []mode{{"plain", false}, {"tls", true}}

func spread(v []uint64) uint64 {
	lo, hi := v[0], v[0]
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	return hi - lo
}

// TestHoldBound: a member that stops reading holds the channel's
// history back from the byte caps only so far (max(--history-bytes,
// 4 x --max-message) beyond the cap); past it the ring laps the member and
// it is closed 1008 at once, long before its grace period, while the
// member that reads gets every message.
func TestHoldBound(t *testing.T) {
	const (
		messages = 40
		size     = 512 << 10
	)
	ts := startServer(t, mode{"plain", false}, func(o *server.Options) {
		o.HistoryBytes = 1 << 20
		o.MaxMessage = 1 << 20 // hold: 4 MiB beyond the 1 MiB cap
		o.MaxPending = 64 << 10
		o.SlowGrace = 10 * time.Minute // only the hold bound can close the stalled one
	})
	const ch = "hold"
	pub := ts.join(t, "pub", ch)
	stalled, err := ts.joinErr("stalled", ch, dialConfig{rcvBuf: 4096})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stalled.Close() })
	reader := ts.join(t, "reader", ch)
	ts.waitMembers(t, 3)
	slowBefore := ts.Stats().SlowConsumers

	got := make(chan error, 1)
	go func() {
		for i := 0; i < messages; {
			f, err := reader.nextFrame(30 * time.Second)
			if err != nil {
				got <- fmt.Errorf("reader: after %d messages: %v", i, err)
				return
			}
			switch f.Header.OpCode {
			case ws.OpText: // stored join frames
			case ws.OpBinary:
				if len(f.Payload) != size || f.Payload[0] != byte(i) {
					got <- fmt.Errorf("reader: message %d: %d bytes starting %d", i, len(f.Payload), f.Payload[0])
					return
				}
				i++
			default:
				got <- fmt.Errorf("reader: unexpected %v", f.Header.OpCode)
				return
			}
		}
		got <- nil
	}()
	for i := range messages {
		pub.mustSend(t, ws.OpBinary, bytes.Repeat([]byte{byte(i)}, size))
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	poll.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		if n := ts.Stats().SlowConsumers - slowBefore; n != 1 {
			return fmt.Errorf("%d slow consumers closed, want the stalled member (20 MiB published, hold 4 MiB)", n)
		}
		return nil
	})
}
