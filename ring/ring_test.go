package ring

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// msg returns a message whose frame is n bytes, tagged with from.
func msg(n int, from uint64) *Message {
	return &Message{Frame: make([]byte, n), From: from}
}

// retainedBytes sums len(Frame) over every message still stored in a slot and every stored
// join: the ground truth that Bytes must equal when no Publish is in flight.
func retainedBytes(r *Ring) (n int64, count int) {
	r.joins.mu.Lock()
	for i := range r.joins.n {
		n += int64(len(r.joins.at(i).Msg.Frame))
	}
	r.joins.mu.Unlock()
	t := r.table.Load()
	if t == nil {
		return n, 0
	}
	for i := range t.chunks {
		c := t.chunks[i].Load()
		if c == nil {
			continue
		}
		for j := range *c {
			if m := (*c)[j].msg.Load(); m != nil {
				n += int64(len(m.Frame))
				count++
			}
		}
	}
	return n, count
}

func checkAccounting(t *testing.T, r *Ring) {
	t.Helper()
	n, _ := retainedBytes(r)
	if got := r.Bytes(); got != n {
		t.Fatalf("Bytes() = %d, slots hold %d", got, n)
	}
}

// mustRead reads seq and fails unless it is Ready with want.
func mustRead(t *testing.T, r *Ring, seq uint64, want *Message) {
	t.Helper()
	m, st := r.Read(seq)
	if st != Ready || m != want {
		t.Fatalf("Read(%d) = %p, %v; want %p, Ready", seq, m, st, want)
	}
}

func mustStatus(t *testing.T, r *Ring, seq uint64, want Status) {
	t.Helper()
	m, st := r.Read(seq)
	if st != want {
		t.Fatalf("Read(%d) status = %v, want %v", seq, st, want)
	}
	if st != Ready && m != nil {
		t.Fatalf("Read(%d) = %v with a non-nil message", seq, st)
	}
}

func TestNewDefaults(t *testing.T) {
	tests := []struct {
		name        string
		cfg         Config
		size, histo int
	}{
		// The zero Config: default size and history.
		{"zero", Config{}, DefaultSize, DefaultHistory},
		// A large history raises the default size to 2*History rounded up.
		{"big history", Config{History: 1000}, 2048, 1000},
		// Sizes round up to a power of two.
		{"round up", Config{Size: 100, History: 3}, 128, 3},
		// Size 1 would break the slot protocol; the minimum is 2.
		{"minimum", Config{Size: 1, History: 1}, 2, 1},
		// Negative values mean the default.
		{"negative", Config{Size: -5, History: -1, MaxBytes: -1}, DefaultSize, DefaultHistory},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := New(tc.cfg)
			if r.Size() != tc.size || int(r.history) != tc.histo || r.maxBytes < 0 {
				t.Fatalf("Size=%d history=%d maxBytes=%d; want %d, %d", r.Size(), r.history, r.maxBytes, tc.size, tc.histo)
			}
			if got := len(make([]struct{}, r.size>>r.chunkShift)) << r.chunkShift; got != tc.size {
				t.Fatalf("chunks cover %d slots, want %d", got, tc.size)
			}
		})
	}
}

func TestSingleProducerOrder(t *testing.T) {
	r := New(Config{Size: 64, History: 8})
	mustStatus(t, r, 0, NotReady) // empty ring: no table yet
	var pub []*Message
	for i := range 50 {
		m := msg(i, 1)
		if seq := r.Publish(m); seq != uint64(i) {
			t.Fatalf("Publish #%d returned %d", i, seq)
		}
		pub = append(pub, m)
	}
	if r.Head() != 50 || r.Len() != 50 || r.Tail() != 0 {
		t.Fatalf("Head=%d Len=%d Tail=%d", r.Head(), r.Len(), r.Tail())
	}
	for i, m := range pub {
		mustRead(t, r, uint64(i), m)
	}
	mustStatus(t, r, 50, NotReady)
	mustStatus(t, r, 1000, NotReady)
	checkAccounting(t, r)
}

// TestMultiProducerTotalOrder checks that concurrent readers see every message exactly once,
// in one total order that is the same for all of them and keeps each producer's own order.
func TestMultiProducerTotalOrder(t *testing.T) {
	const producers, perProducer, readers = 8, 10_000, 4
	const total = producers * perProducer
	r := New(Config{Size: 1 << 17, History: 200})
	published := make([]*Message, total) // by sequence, written by producers
	type tag struct{ p, i int }
	tags := make(map[*Message]tag, total)
	msgs := make([][]*Message, producers)
	for p := range msgs {
		for i := range perProducer {
			m := msg(8, uint64(p))
			msgs[p] = append(msgs[p], m)
			tags[m] = tag{p, i}
		}
	}

	seen := make([][]*Message, readers)
	var wg sync.WaitGroup
	for k := range readers {
		wg.Go(func() {
			got := make([]*Message, 0, total)
			for cur := uint64(0); cur < total; {
				m, st := r.Read(cur)
				switch st {
				case Ready:
					got = append(got, m)
					cur++
				case NotReady:
					runtime.Gosched()
				case Lost:
					t.Errorf("reader %d: Lost at %d with a ring of %d", k, cur, r.Size())
					return
				}
			}
			seen[k] = got
		})
	}
	for p := range producers {
		wg.Go(func() {
			for _, m := range msgs[p] {
				published[r.Publish(m)] = m
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	last := make([]int, producers)
	for p := range last {
		last[p] = -1
	}
	for seq, m := range published {
		tg := tags[m]
		if tg.i != last[tg.p]+1 {
			t.Fatalf("seq %d: producer %d message %d after %d", seq, tg.p, tg.i, last[tg.p])
		}
		last[tg.p] = tg.i
	}
	for k, got := range seen {
		if len(got) != total {
			t.Fatalf("reader %d saw %d messages, want %d", k, len(got), total)
		}
		for seq, m := range got {
			if m != published[seq] {
				t.Fatalf("reader %d: seq %d is %v, publisher stored %v", k, seq, tags[m], tags[published[seq]])
			}
		}
	}
	checkAccounting(t, r)
}

func TestLapping(t *testing.T) {
	r := New(Config{Size: 16, History: 4})
	var pub []*Message
	for range 100 {
		m := msg(1, 0)
		r.Publish(m)
		pub = append(pub, m)
	}
	for seq := range uint64(100) {
		if seq < 100-16 {
			mustStatus(t, r, seq, Lost)
		} else {
			mustRead(t, r, seq, pub[seq])
		}
	}
	if r.Len() != 16 || r.Tail() != 100-16 || r.Bytes() != 16 {
		t.Fatalf("Len=%d Tail=%d Bytes=%d; want 16, 84, 16", r.Len(), r.Tail(), r.Bytes())
	}
	checkAccounting(t, r)
}

// TestLappingConcurrent runs producers far ahead of readers on a tiny ring, with byte caps
// evicting too: a reader may see Lost or NotReady but never a wrong message.
func TestLappingConcurrent(t *testing.T) {
	const producers, perProducer = 4, 5_000
	const total = producers * perProducer
	budget := NewBudget(2_000)
	r := New(Config{Size: 8, History: 4, MaxBytes: 500, Budget: budget})
	published := make([]atomic.Pointer[Message], total)
	type obs struct {
		seq uint64
		m   *Message
	}
	var observed [3][]obs
	var stop atomic.Bool
	var wg, rg sync.WaitGroup
	for k := range observed {
		rg.Go(func() {
			for cur := uint64(0); !stop.Load(); {
				m, st := r.Read(cur)
				switch st {
				case Ready:
					observed[k] = append(observed[k], obs{cur, m})
					cur++
				case Lost:
					cur = max(cur+1, r.Tail()) // skip ahead, as a test reader may
				case NotReady:
					runtime.Gosched()
				}
			}
		})
	}
	for p := range producers {
		wg.Go(func() {
			for i := range perProducer {
				m := msg(10+i%90, uint64(p))
				published[r.Publish(m)].Store(m)
			}
		})
	}
	wg.Wait()
	stop.Store(true)
	rg.Wait()
	n := 0
	for k := range observed {
		for _, o := range observed[k] {
			if want := published[o.seq].Load(); o.m != want {
				t.Fatalf("reader %d got a wrong message at %d", k, o.seq)
			}
			n++
		}
	}
	t.Logf("%d messages read correctly across readers; %d bytes retained", n, r.Bytes())
	checkAccounting(t, r)
	if budget.Used() != r.Bytes() {
		t.Fatalf("Budget.Used=%d, ring Bytes=%d", budget.Used(), r.Bytes())
	}
	if r.Bytes() > 500 {
		t.Fatalf("Bytes=%d above MaxBytes with no publish in flight", r.Bytes())
	}
	r.Release()
	if r.Bytes() != 0 || budget.Used() != 0 {
		t.Fatalf("after Release: Bytes=%d Used=%d", r.Bytes(), budget.Used())
	}
}

func TestEvictMaxBytes(t *testing.T) {
	r := New(Config{Size: 64, History: 10, MaxBytes: 100})
	var pub []*Message
	for range 4 {
		m := msg(30, 0)
		r.Publish(m)
		pub = append(pub, m)
	}
	// 120 > 100: the oldest went.
	mustStatus(t, r, 0, Lost)
	for i := 1; i < 4; i++ {
		mustRead(t, r, uint64(i), pub[i])
	}
	if r.Bytes() != 90 || r.Tail() != 1 || r.Len() != 3 {
		t.Fatalf("Bytes=%d Tail=%d Len=%d; want 90, 1, 3", r.Bytes(), r.Tail(), r.Len())
	}
	// A frame larger than the cap evicts all others but itself: the message just published
	// is never evicted, so live readers still get it.
	big := msg(150, 0)
	r.Publish(big)
	mustRead(t, r, 4, big)
	for i := range uint64(4) {
		mustStatus(t, r, i, Lost)
	}
	if r.Bytes() != 150 || r.Tail() != 4 {
		t.Fatalf("Bytes=%d Tail=%d; want 150, 4", r.Bytes(), r.Tail())
	}
	// The next publish evicts it.
	small := msg(5, 0)
	r.Publish(small)
	mustStatus(t, r, 4, Lost)
	mustRead(t, r, 5, small)
	if r.Bytes() != 5 {
		t.Fatalf("Bytes=%d, want 5", r.Bytes())
	}
	checkAccounting(t, r)
	r.Release()
	mustStatus(t, r, 5, Lost)
	if r.Bytes() != 0 || r.Len() != 0 {
		t.Fatalf("after Release: Bytes=%d Len=%d", r.Bytes(), r.Len())
	}
}

func TestEvictBudget(t *testing.T) {
	b := NewBudget(100)
	a := New(Config{Size: 16, History: 10, Budget: b})
	c := New(Config{Size: 16, History: 10, Budget: b})
	for range 3 {
		a.Publish(msg(30, 0)) // 90
	}
	c.Publish(msg(30, 0)) // 120: c holds only the message just published, nothing to evict
	if b.Used() != 120 || c.Len() != 1 {
		t.Fatalf("Used=%d c.Len=%d; want 120, 1", b.Used(), c.Len())
	}
	c.Publish(msg(30, 0)) // 150: c evicts its first, still over
	mustStatus(t, c, 0, Lost)
	if b.Used() != 120 || c.Bytes() != 30 {
		t.Fatalf("Used=%d c.Bytes=%d; want 120, 30", b.Used(), c.Bytes())
	}
	a.Publish(msg(10, 0)) // 130: a evicts 0 (100), still within? 100 is not over
	mustStatus(t, a, 0, Lost)
	mustStatus(t, a, 1, Ready)
	if b.Used() != 100 || a.Bytes() != 70 {
		t.Fatalf("Used=%d a.Bytes=%d; want 100, 70", b.Used(), a.Bytes())
	}
	checkAccounting(t, a)
	checkAccounting(t, c)
	if a.Bytes()+c.Bytes() != b.Used() {
		t.Fatalf("rings hold %d, Budget says %d", a.Bytes()+c.Bytes(), b.Used())
	}
	a.Release()
	c.Release()
	if b.Used() != 0 {
		t.Fatalf("Used=%d after Release", b.Used())
	}
	// An unlimited Budget still counts.
	u := NewBudget(0)
	r := New(Config{Budget: u})
	r.Publish(msg(7, 0))
	if u.Used() != 7 || r.Len() != 1 {
		t.Fatalf("unlimited: Used=%d Len=%d", u.Used(), r.Len())
	}
}

func TestHistorySpan(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		frames []int // published frame sizes, oldest first
		want   Span
	}{
		// Nothing published: an empty span at 0.
		{"empty", Config{History: 3}, nil, Span{Start: 0, End: 0}},
		// Fewer messages than the limit: all of them.
		{"fewer", Config{History: 3}, []int{1, 1}, Span{Start: 0, End: 2}},
		// Exactly the limit.
		{"exact", Config{History: 3}, []int{1, 1, 1}, Span{Start: 0, End: 3}},
		// More than the limit: exactly the last 3.
		{"last three", Config{History: 3}, []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, Span{Start: 7, End: 10}},
		// The byte cap evicted the first frame (55 > 50); the last 3 fit (5+25+20 = 50).
		{"byte cap", Config{History: 3, MaxBytes: 50}, []int{5, 5, 25, 20}, Span{Start: 1, End: 4}},
		// The message limit applies within the byte cap.
		{"byte cap and limit", Config{History: 2, MaxBytes: 50}, []int{5, 5, 25, 20}, Span{Start: 2, End: 4}},
		// Evicted messages are not history (the tail bounds the span).
		{"evicted", Config{History: 10, MaxBytes: 30}, []int{10, 10, 10, 10, 10}, Span{Start: 2, End: 5}},
		// A single frame over the cap is kept for live readers but is not history.
		{"oversize", Config{History: 3, MaxBytes: 50}, []int{10, 60}, Span{Start: 2, End: 2}},
		// History above the ring: a quarter of the ring stays headroom (16 - 4 = 12).
		{"window", Config{Size: 16, History: 100}, make([]int, 40), Span{Start: 28, End: 40}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := New(tc.cfg)
			for _, n := range tc.frames {
				r.Publish(msg(n, 0))
			}
			got := r.HistorySpan()
			if got.Start != tc.want.Start || got.End != tc.want.End || got.Joins != nil {
				t.Fatalf("HistorySpan() = %+v, want %+v", got, tc.want)
			}
			if r.HistoryStart() != tc.want.Start || got.Len() != int(tc.want.End-tc.want.Start) {
				t.Fatalf("HistoryStart()=%d Len=%d", r.HistoryStart(), got.Len())
			}
			for seq := got.Start; seq < got.End; seq++ {
				mustStatus(t, r, seq, Ready)
			}
		})
	}
}

// TestJoinRacingBurst joins while producers publish: the joiner's cursor runs from the
// history start into live traffic and sees a contiguous, gap-free sequence.
func TestJoinRacingBurst(t *testing.T) {
	for round := range 20 {
		r := New(Config{Size: 1024, History: 200})
		for range 300 {
			r.Publish(msg(4, 99))
		}
		const producers, burst = 4, 150 // 600 racing messages: less than the ring's headroom
		published := make([]atomic.Pointer[Message], 300+producers*burst)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for p := range producers {
			wg.Go(func() {
				<-start
				for range burst {
					m := msg(4, uint64(p))
					published[r.Publish(m)].Store(m)
				}
			})
		}
		var span Span
		var got []*Message
		joined := make(chan struct{})
		wg.Go(func() {
			<-start
			runtime.Gosched()
			span = r.HistorySpan()
			close(joined)
			for cur := span.Start; cur < uint64(len(published)); {
				m, st := r.Read(cur)
				switch st {
				case Ready:
					got = append(got, m)
					cur++
				case NotReady:
					runtime.Gosched()
				case Lost:
					t.Errorf("round %d: Lost at %d (span %+v, head %d)", round, cur, span, r.Head())
					return
				}
			}
		})
		close(start)
		<-joined
		wg.Wait()
		if t.Failed() {
			return
		}
		if span.Len() != 200 {
			t.Fatalf("round %d: span %+v holds %d messages, want 200", round, span, span.Len())
		}
		for i, m := range got {
			seq := span.Start + uint64(i)
			if want := published[seq].Load(); want != nil && m != want {
				t.Fatalf("round %d: seq %d: wrong message", round, seq)
			}
		}
		if uint64(len(got)) != uint64(len(published))-span.Start {
			t.Fatalf("round %d: read %d, want %d", round, len(got), uint64(len(published))-span.Start)
		}
	}
}

func TestChunkLaziness(t *testing.T) {
	r := New(Config{Size: 1024, History: 200})
	if r.table.Load() != nil {
		t.Fatal("a new ring allocated its chunk table")
	}
	chunks := func() (n int) {
		for i := range r.table.Load().chunks {
			if r.table.Load().chunks[i].Load() != nil {
				n++
			}
		}
		return n
	}
	r.Publish(msg(1, 0))
	if n := chunks(); n != 1 {
		t.Fatalf("%d chunks after one message, want 1", n)
	}
	per := 1 << r.chunkShift
	for range per {
		r.Publish(msg(1, 0))
	}
	if n := chunks(); n != 2 {
		t.Fatalf("%d chunks after %d messages, want 2", n, per+1)
	}
	for range 3 * r.Size() {
		r.Publish(msg(1, 0))
	}
	if n := chunks(); n != r.Size()/per {
		t.Fatalf("%d chunks after wrapping, want %d", n, r.Size()/per)
	}
}

// TestMemory measures what a quiet channel costs: an empty ring, and a ring with one message
// (slot memory only: the message and its frame are the caller's).
func TestMemory(t *testing.T) {
	if allocs := testing.AllocsPerRun(100, func() { _ = New(Config{}) }); allocs != 1 {
		t.Fatalf("New: %v allocs, want 1", allocs)
	}
	m := &Message{Frame: make([]byte, 16)}
	for _, tc := range []struct {
		name  string
		cfg   Config
		msgs  int
		limit int64 // bytes per ring
	}{
		// Default ring, no messages: the struct alone.
		{"empty/size=1024", Config{}, 0, 256},
		// Default ring with one message: table (32 pointers) + one chunk (32 slots).
		{"one/size=1024", Config{}, 1, 1200},
		// A large ring (history 999999) still costs nothing empty...
		{"empty/size=2097152", Config{History: 999_999}, 0, 256},
		// ...and about sqrt(Size) words with one message.
		{"one/size=2097152", Config{History: 999_999}, 1, 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 2000
			rings := make([]*Ring, n)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for i := range rings {
				rings[i] = New(tc.cfg)
				for range tc.msgs {
					rings[i].Publish(m)
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			per := int64(after.HeapAlloc-before.HeapAlloc) / n
			t.Logf("%s: %d bytes per ring", tc.name, per)
			if per > tc.limit {
				t.Fatalf("%d bytes per ring, want at most %d", per, tc.limit)
			}
			runtime.KeepAlive(rings)
		})
	}
}

func TestReleaseRacesReaders(t *testing.T) {
	b := NewBudget(0)
	r := New(Config{Size: 64, History: 10, Budget: b})
	for range 200 {
		r.Publish(msg(3, 0))
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := range 10_000 {
				seq := r.Head() - 1 - uint64(i%64)
				if m, st := r.Read(seq); st == Ready && len(m.Frame) != 3 {
					t.Errorf("wrong message at %d", seq)
					return
				}
			}
		})
	}
	r.Release()
	wg.Wait()
	if b.Used() != 0 || r.Bytes() != 0 || r.Len() != 0 {
		t.Fatalf("Used=%d Bytes=%d Len=%d after Release", b.Used(), r.Bytes(), r.Len())
	}
	for seq := uint64(0); seq < r.Head(); seq++ {
		mustStatus(t, r, seq, Lost)
	}
	// The ring stays usable: a later publish is accounted from zero.
	r.Publish(msg(5, 0))
	mustStatus(t, r, 200, Ready)
	if b.Used() != 5 {
		t.Fatalf("Used=%d, want 5", b.Used())
	}
	checkAccounting(t, r)
}

func TestStatusString(t *testing.T) {
	for st, want := range map[Status]string{Ready: "Ready", NotReady: "NotReady", Lost: "Lost", 9: "Status(?)"} {
		if got := fmt.Sprint(st); got != want {
			t.Errorf("%d: %q, want %q", st, got, want)
		}
	}
}

// TestInFlight holds one publish between its claim and its fill: readers see NotReady there
// (and Ready after it), eviction stops at it, history includes it, and it lands intact.
func TestInFlight(t *testing.T) {
	r := New(Config{Size: 16, History: 10, MaxBytes: 50})
	a, b, c := msg(20, 1), msg(20, 2), msg(20, 3)
	sa := r.claim(a)
	r.Publish(b)
	r.Publish(c) // 60 > 50, but the oldest is still being written: nothing to evict yet
	mustStatus(t, r, sa, NotReady)
	mustRead(t, r, 1, b)
	mustRead(t, r, 2, c)
	if r.Bytes() != 60 || r.Tail() != 0 {
		t.Fatalf("Bytes=%d Tail=%d; want 60, 0", r.Bytes(), r.Tail())
	}
	if span := r.HistorySpan(); span.Start != 0 || span.End != 3 {
		t.Fatalf("HistorySpan() = %+v: the in-flight message is history too", span)
	}
	r.fill(sa, a)
	mustRead(t, r, sa, a)
	// Its own publish never evicts it; the next one does.
	d := msg(20, 4)
	r.Publish(d)
	mustStatus(t, r, 0, Lost)
	if r.Bytes() != 40 || r.Tail() != 2 {
		t.Fatalf("Bytes=%d Tail=%d; want 40, 2", r.Bytes(), r.Tail())
	}
	checkAccounting(t, r)
}

// TestInFlightLapped lets producers lap a slot whose previous occupant is still in flight: the
// producer one lap later waits for it, and the accounting stays exact.
func TestInFlightLapped(t *testing.T) {
	r := New(Config{Size: 4, History: 2})
	slow := msg(7, 0)
	s := r.claim(slow)
	for range 3 {
		r.Publish(msg(1, 0))
	}
	done := make(chan uint64)
	go func() { done <- r.Publish(msg(1, 0)) }() // same slot as s, one lap later: must wait
	select {
	case seq := <-done:
		t.Fatalf("Publish(%d) overwrote a slot still being written", seq)
	case <-time.After(20 * time.Millisecond):
	}
	r.fill(s, slow)
	if seq := <-done; seq != s+4 {
		t.Fatalf("lapping publish got %d, want %d", seq, s+4)
	}
	mustStatus(t, r, s, Lost)
	if r.Bytes() != 4 || r.Tail() != 1 {
		t.Fatalf("Bytes=%d Tail=%d; want 4, 1", r.Bytes(), r.Tail())
	}
	checkAccounting(t, r)
}
