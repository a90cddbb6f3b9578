package server_test

// BenchmarkFanout measures the server's fan-out path end to end, in
// process: one publisher writes pre-built masked frames over a real
// loopback socket, the server stores each once in the channel ring and
// drains it to every subscriber with one write per batch, and raw TCP
// subscribers count what arrives. Clients allocate nothing in the timed
// loop, so the process-wide allocation count is the server's.
//
// The clients share the process (and its 2 cores here) with the server, so
// ns/op is the whole system's. The server's own cost is loop-ns/delivery:
// the CPU time of the event loops' threads (each pinned to its thread with
// LockOSThread, read from /proc/self/task/TID/schedstat) per delivered
// message, user and system time, writes included.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/server"
)

const (
	// benchPayload is the payload size of every published message.
	benchPayload = 64
	// benchBatch is how many frames the publisher writes per Write.
	benchBatch = 16
	// benchRing is the channel ring size; the publisher stays at most
	// benchWindow messages ahead of the slowest subscriber, so the ring
	// never laps a subscriber (that would close it as a slow consumer).
	benchRing   = 4096
	benchWindow = benchRing / 4
	// benchWait bounds one run's wait for the last deliveries.
	benchWait = 60 * time.Second
)

// fanoutSink keeps the benchmark's result alive (dead-code elimination).
var fanoutSink int64

func BenchmarkFanout(b *testing.B) {
	for _, reactors := range []int{1, 2} {
		b.Run(fmt.Sprintf("reactors=%d", reactors), func(b *testing.B) {
			for _, subs := range []int{10, 100, 1000} {
				// The fixture is built on the sub-benchmark's first run and
				// reused by the later runs (b.N=1, then the real b.N), so
				// dialing happens once and never inside the timer.
				var f *fanoutFixture
				b.Run(fmt.Sprintf("subs=%04d", subs), func(b *testing.B) {
					if f == nil {
						var err error
						if f, err = newFanoutFixture(b, reactors, subs); err != nil {
							if f != nil {
								f.close()
								f = nil
							}
							b.Fatalf("setup: %v", err)
						}
					}
					f.run(b)
				})
				if f != nil {
					f.close()
				}
			}
		})
	}
}

// subCounter is one subscriber's delivered-frame count, on its own cache line.
type subCounter struct {
	n atomic.Int64
	_ [56]byte
}

type fanoutFixture struct {
	srv    *server.Server
	pub    *rawClient
	subs   []*rawClient
	counts []subCounter
	readWG sync.WaitGroup

	// want is the per-subscriber count the publisher waits for; a reader
	// that reaches it pokes wake.
	want atomic.Int64
	wake chan struct{}
	tick *time.Ticker

	frames []byte // benchBatch masked binary frames of benchPayload bytes
	frameN int    // bytes of one masked frame

	before, after runtime.MemStats
	threads       []int // the event loops' OS threads
}

// newFanoutFixture starts a plain server, joins subs raw subscribers and
// one publisher to one channel, and starts a counting reader per subscriber.
func newFanoutFixture(b *testing.B, reactors, subs int) (*fanoutFixture, error) {
	opts := baseOptions(b, modes[1])
	opts.Reactors = reactors
	opts.RingSize = benchRing
	opts.HeaderTimeout = time.Minute
	opts.LockOSThread = true // loop-ns/delivery reads the loops' threads
	s, err := server.New(opts)
	if err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	f := &fanoutFixture{
		srv:    s,
		subs:   make([]*rawClient, subs),
		counts: make([]subCounter, subs),
		wake:   make(chan struct{}, 1),
		tick:   time.NewTicker(100 * time.Millisecond),
	}
	ts := &testServer{Server: s, t: b, addr: s.Addr().String()}

	// Dial in parallel: 1000 sequential upgrades would take a while.
	const dialers = 16
	var (
		wg      sync.WaitGroup
		next    atomic.Int64
		errOnce sync.Once
		dialErr error
	)
	for range dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= subs {
					return
				}
				c, err := ts.joinErr(fmt.Sprintf("sub%04d", i), "fanout", dialConfig{})
				if err != nil {
					errOnce.Do(func() { dialErr = fmt.Errorf("subscriber %d: %w", i, err) })
					return
				}
				f.subs[i] = c
			}
		}()
	}
	wg.Wait()
	if dialErr != nil {
		return f, dialErr
	}
	if f.pub, err = ts.joinErr("publisher", "fanout", dialConfig{}); err != nil {
		return f, fmt.Errorf("publisher: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for s.Stats().Members != int64(subs+1) {
		if time.Now().After(deadline) {
			return f, fmt.Errorf("Stats().Members = %d, want %d", s.Stats().Members, subs+1)
		}
		time.Sleep(5 * time.Millisecond)
	}

	f.threads = s.LoopThreads()
	if len(f.threads) != reactors {
		return f, fmt.Errorf("%d loops with connections, want %d", len(f.threads), reactors)
	}
	for i, c := range f.subs {
		f.readWG.Add(1)
		go f.read(c, &f.counts[i].n)
	}

	payload := make([]byte, benchPayload)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	one := maskedFrame(ws.OpBinary, true, 0, payload)
	f.frameN = len(one)
	for range benchBatch {
		f.frames = append(f.frames, one...)
	}
	return f, nil
}

// read counts the benchmark's frames (binary, benchPayload bytes) arriving
// on c into a fixed buffer. The history replay before them (join frames of
// earlier subscribers) is parsed and skipped.
func (f *fanoutFixture) read(c *rawClient, n *atomic.Int64) {
	defer f.readWG.Done()
	buf := make([]byte, 64<<10)
	var fc frameCounter
	var total int64
	for {
		k, err := c.br.Read(buf) // the bufio.Reader is empty: reads go straight to the socket
		if k > 0 {
			if d := fc.feed(buf[:k]); d > 0 {
				total += d
				n.Store(total)
				if total >= f.want.Load() {
					select {
					case f.wake <- struct{}{}:
					default:
					}
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// frameCounter parses server frames (unmasked) just enough to skip them,
// across reads, without allocating.
type frameCounter struct {
	hdr  [10]byte
	hn   int // header bytes held in hdr
	skip int // payload bytes still to skip
}

// feed consumes p and returns the number of complete headers of binary
// frames with a benchPayload-byte payload.
func (fc *frameCounter) feed(p []byte) int64 {
	var n int64
	for len(p) > 0 {
		if fc.skip > 0 {
			k := min(fc.skip, len(p))
			fc.skip -= k
			p = p[k:]
			continue
		}
		// Fast path: a whole short header at hand.
		if fc.hn == 0 && len(p) >= 2 && p[1]&0x7f < 126 {
			if p[0]&0x0f == byte(ws.OpBinary) && int(p[1]&0x7f) == benchPayload {
				n++
			}
			fc.skip = int(p[1] & 0x7f)
			p = p[2:]
			continue
		}
		need := 2
		if fc.hn >= 2 {
			switch fc.hdr[1] & 0x7f {
			case 126:
				need = 4
			case 127:
				need = 10
			}
		}
		if fc.hn < need {
			k := copy(fc.hdr[fc.hn:need], p)
			fc.hn += k
			p = p[k:]
			if fc.hn == 2 && fc.hdr[1]&0x7f >= 126 {
				continue // an extended length follows
			}
			if fc.hn < need {
				continue
			}
		}
		var length int
		switch l := fc.hdr[1] & 0x7f; l {
		case 126:
			length = int(fc.hdr[2])<<8 | int(fc.hdr[3])
		case 127:
			for _, c := range fc.hdr[2:10] {
				length = length<<8 | int(c)
			}
		default:
			length = int(l)
		}
		if fc.hdr[0]&0x0f == byte(ws.OpBinary) && length == benchPayload {
			n++
		}
		fc.skip = length
		fc.hn = 0
	}
	return n
}

func (f *fanoutFixture) minCount() int64 {
	m := f.counts[0].n.Load()
	for i := 1; i < len(f.counts); i++ {
		m = min(m, f.counts[i].n.Load())
	}
	return m
}

func (f *fanoutFixture) sumCount() int64 {
	var s int64
	for i := range f.counts {
		s += f.counts[i].n.Load()
	}
	return s
}

// waitMin waits until every subscriber has counted at least target frames.
func (f *fanoutFixture) waitMin(target int64, deadline time.Time) error {
	f.want.Store(target)
	for f.minCount() < target {
		select {
		case <-f.wake:
		case <-f.tick.C:
			if time.Now().After(deadline) {
				return fmt.Errorf("slowest subscriber at %d frames, want %d (server stats %+v)",
					f.minCount(), target, f.srv.Stats())
			}
		}
	}
	return nil
}

func (f *fanoutFixture) run(b *testing.B) {
	subs := int64(len(f.subs))
	base := f.minCount() // every subscriber is at base: the previous run waited for all
	if sum := f.sumCount(); sum != base*subs {
		b.Fatalf("subscribers not level before the run: sum %d, min %d x %d", sum, base, subs)
	}
	conn := f.pub.conn
	frames := f.frames
	deadline := time.Now().Add(benchWait)

	b.SetBytes(benchPayload)
	b.ReportAllocs()
	runtime.GC()
	runtime.ReadMemStats(&f.before)
	cpu0, err := f.loopCPU()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()

	sent := 0
	for sent < b.N {
		k := min(benchBatch, b.N-sent)
		if lag := int64(sent + k - benchWindow); lag > 0 {
			if err := f.waitMin(base+lag, deadline); err != nil {
				b.Fatalf("flow control: %v", err)
			}
		}
		if _, err := conn.Write(frames[:k*f.frameN]); err != nil {
			b.Fatalf("publish: %v", err)
		}
		sent += k
	}
	if err := f.waitMin(base+int64(b.N), deadline); err != nil {
		b.Fatalf("delivery: %v", err)
	}

	b.StopTimer()
	cpu1, err := f.loopCPU()
	if err != nil {
		b.Fatal(err)
	}
	runtime.ReadMemStats(&f.after)
	deliveries := int64(b.N) * subs
	if got := f.sumCount() - base*subs; got != deliveries {
		b.Fatalf("delivered %d frames, want %d", got, deliveries)
	}
	fanoutSink += deliveries
	b.ReportMetric(float64(deliveries)/b.Elapsed().Seconds(), "deliveries/s")
	b.ReportMetric(float64(f.after.Mallocs-f.before.Mallocs)/float64(deliveries), "allocs/delivery")
	b.ReportMetric(float64(cpu1-cpu0)/float64(deliveries), "loop-ns/delivery")
}

// loopCPU returns the CPU time the event loops' threads have used, in
// nanoseconds (the first field of schedstat: time on a CPU, user and
// system).
func (f *fanoutFixture) loopCPU() (int64, error) {
	var sum int64
	for _, tid := range f.threads {
		b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/schedstat", tid))
		if err != nil {
			return 0, err
		}
		var ns int64
		if _, err := fmt.Sscan(string(b), &ns); err != nil {
			return 0, fmt.Errorf("schedstat of thread %d: %q: %w", tid, b, err)
		}
		sum += ns
	}
	return sum, nil
}

// close disconnects every client, stops the readers and shuts the server down.
func (f *fanoutFixture) close() {
	f.tick.Stop()
	if f.pub != nil {
		_ = f.pub.Close()
	}
	for _, c := range f.subs {
		if c != nil {
			_ = c.Close()
		}
	}
	f.readWG.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.srv.Shutdown(ctx); err != nil && !errors.Is(err, net.ErrClosed) {
		fmt.Printf("fanout: shutdown: %v\n", err)
	}
}
