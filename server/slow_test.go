package server_test

// Acceptance 5 (issue 2): a subscriber that never reads is closed as a slow
// consumer (SPEC 1.6) while the others get every message; heap stays
// bounded.

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/internal/poll"
	"github.com/mles/mles/server"
)

func TestSlowConsumer(t *testing.T) {
	const (
		// Enough bytes to fill the slow one's socket buffers (tcp_wmem
		// max is 4 MiB on these machines) and stay over MaxPending past
		// the grace period.
		messages = 1500
		size     = 4 << 10
		// Growth of the heap during the burst. Messages are shared, not
		// copied per member, and each member's pending output is bounded
		// by MaxPending (64 KiB): about 6 MiB of messages plus 100 x
		// 64 KiB. Seen (absolute, alone): 16 MiB plain, 22-27 MiB TLS.
		heapMax = 64 << 20
	)
	forModes(t, func(t *testing.T, m mode) {
		// 100 members in plain mode as in the acceptance text; fewer over
		// TLS, where the bridge path is what matters and every reader
		// costs a decryption of 6 MiB under -race.
		members := int64(100) // publisher + slow one + readers
		if m.tls {
			members = 30
		}
		readers := members - 2
		ts := startServer(t, m, func(o *server.Options) {
			o.MaxPending = 64 << 10
			o.SlowGrace = time.Second
			o.History = 1
		})
		const ch = "slow"
		pub := ts.join(t, "publisher", ch)
		// The slow one: tiny receive buffer, joins and never reads again.
		slow, err := ts.joinErr("sloth", ch, dialConfig{rcvBuf: 4096})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { slow.Close() })
		rs := make([]*rawClient, int(readers))
		for i := range rs {
			rs[i] = ts.join(t, fmt.Sprintf("reader%02d", i), ch)
		}
		ts.waitMembers(t, members)
		slowBefore := ts.Stats().SlowConsumers

		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			errs []string
			done atomic.Int64
		)
		for i, c := range rs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				next := uint32(0)
				for next < messages {
					msg, err := c.recv(30 * time.Second)
					if err == nil && msg.op == ws.OpText {
						continue // a stored join frame (History 1)
					}
					if err == nil {
						_, seq, ok := parseSeq(msg.data)
						switch {
						case !ok || len(msg.data) != size:
							err = fmt.Errorf("corrupt message of %d bytes", len(msg.data))
						case seq != next:
							err = fmt.Errorf("got seq %d, want %d", seq, next)
						}
					}
					if err != nil {
						mu.Lock()
						errs = append(errs, fmt.Sprintf("reader%02d at %d: %v", i, next, err))
						mu.Unlock()
						return
					}
					next++
				}
				done.Add(1)
			}()
		}

		// Heap sampler: live heap after GC, during the burst, against the
		// heap before it: the test binary's heap also holds what earlier
		// tests (in shuffled order) have not let go of yet.
		runtime.GC()
		var ms0 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		base := ms0.HeapInuse
		var peak atomic.Uint64
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			tick := time.NewTicker(250 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
			}
		}()

		// A steady publisher: at most 500 messages a second.
		start := time.Now()
		closedAt := -1
		for s := range messages {
			if s%10 == 9 {
				time.Sleep(20 * time.Millisecond)
			}
			if err := pub.send(ws.OpBinary, seqPayload(0, uint32(s), size)); err != nil {
				t.Fatalf("publish %d: %v", s, err)
			}
			if closedAt < 0 && s%20 == 0 && ts.Stats().SlowConsumers > slowBefore {
				closedAt = s
			}
		}
		t.Logf("slow consumer closed by message %d (%v)", closedAt, time.Since(start))
		t.Logf("published %d x %d B in %v", messages, size, time.Since(start))

		// The slow consumer is closed and counted.
		poll.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
			if s := ts.Stats(); s.SlowConsumers <= slowBefore || s.Members != members-1 {
				return fmt.Errorf("SlowConsumers %d (before %d), Members %d, want %d",
					s.SlowConsumers, slowBefore, s.Members, members-1)
			}
			return nil
		})
		if err := slow.awaitEOF(10 * time.Second); err != nil {
			t.Fatalf("slow consumer's connection: %v", err)
		}

		waitDone := make(chan struct{})
		go func() { wg.Wait(); close(waitDone) }()
		select {
		case <-waitDone:
		case <-time.After(60 * time.Second):
			t.Fatalf("readers not done: %d of %d finished", done.Load(), readers)
		}
		close(stop)
		<-sampled
		if len(errs) > 0 {
			t.Fatalf("%d readers failed, first: %s", len(errs), strings.Join(errs[:min(5, len(errs))], "; "))
		}
		if n := done.Load(); n != readers {
			t.Fatalf("%d of %d readers got every message", n, readers)
		}
		if got := ts.Stats().SlowConsumers - slowBefore; got != 1 {
			t.Fatalf("%d slow consumers closed, want exactly 1 (a reader was closed as slow?)", got)
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		grow := func(v uint64) int64 { return int64(v) - int64(base) }
		t.Logf("heap in use: %d MiB before the burst, peak %d MiB during it, %d MiB after", base>>20, peak.Load()>>20, ms.HeapInuse>>20)
		if g := grow(peak.Load()); g > heapMax {
			t.Fatalf("heap in use grew by %d MiB during the burst, bound %d MiB", g>>20, heapMax>>20)
		}
		if g := grow(ms.HeapInuse); g > heapMax {
			t.Fatalf("heap in use %d MiB above its start after the burst, bound %d MiB", g>>20, heapMax>>20)
		}
	})
}
