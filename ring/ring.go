package ring

import (
	"math/bits"
	"runtime"
	"sync/atomic"
)

// Status says what Read found at a sequence.
type Status uint8

const (
	// Ready: the returned message is the one published at the sequence.
	Ready Status = iota
	// NotReady: the sequence is not published yet (not claimed, or claimed and still being
	// written). Stop reading; the publisher's wake brings the reader back.
	NotReady
	// Lost: the message was overwritten one or more laps later, or evicted by a byte cap (below
	// every Mark) or Release. The reader fell too far behind and has missed it for good.
	Lost
)

// String returns the status name.
func (s Status) String() string {
	switch s {
	case Ready:
		return "Ready"
	case NotReady:
		return "NotReady"
	case Lost:
		return "Lost"
	}
	return "Status(?)"
}

// Defaults applied by New to zero Config fields.
const (
	// DefaultSize is the slot count when Config.Size is 0 (raised to fit 2*History).
	DefaultSize = 1024
	// DefaultHistory is the history limit when Config.History is 0 (SPEC 4, --limit).
	DefaultHistory = 200
)

// Config configures a Ring. The zero value is usable.
type Config struct {
	// Size is the slot count: the most messages the ring holds, and how far a reader may lag
	// before it sees Lost. Rounded up to a power of two (at least 2). Default: DefaultSize,
	// or the power of two at or above 2*History if that is larger.
	Size int
	// History is how many of the newest messages a joiner replays (SPEC --limit).
	// Default: DefaultHistory.
	History int
	// MaxBytes caps the sum of len(Frame) of the messages this ring retains, and of the
	// history it replays. 0 means unlimited.
	MaxBytes int64
	// Budget is an optional global cap shared by many rings; nil means none.
	Budget *Budget
	// Hold is the most frame bytes that Marks may hold back beyond MaxBytes. Past
	// MaxBytes+Hold the oldest messages are evicted whatever the marks say, and a reader that
	// far behind sees Lost: it is a slow consumer, and the channel's memory stays bounded.
	// 0 means MaxBytes (twice the cap in all); ignored without MaxBytes.
	Hold int64
}

// Marks in a slot's sequence word; the low bits hold s (claimed) or s+1 (ready) as described
// in the package documentation. Sequences stay far below 2^62.
const (
	busyBit    = 1 << 63
	evictedBit = 1 << 62
	markBits   = busyBit | evictedBit
)

// slot is one cell of the ring. seq is written last by a producer and checked twice by readers.
type slot struct {
	seq atomic.Uint64
	msg atomic.Pointer[Message]
}

// chunk is the unit of lazy allocation.
type chunk []slot

// table holds the chunk pointers; allocated on the first Publish.
type table struct {
	chunks []atomic.Pointer[chunk]
}

// Ring is a lock-free multi-producer broadcast ring for one channel. All methods are safe for
// concurrent use from any goroutine; Publish and Read never take a lock.
//
// The fields above head are read-only after New. No cache-line padding separates them from the
// counters: readers load head on every drain anyway, and padding would cost every one of 100k
// quiet channels.
type Ring struct {
	size       uint64 // power of two
	mask       uint64 // size-1
	chunkShift uint   // log2 of slots per chunk
	history    uint64 // history limit in messages
	window     uint64 // most messages a joiner replays: size minus headroom for racing publishes
	maxBytes   int64
	hold       int64 // with maxBytes: marks hold back no more than maxBytes+hold
	budget     *Budget

	table atomic.Pointer[table]
	head  atomic.Uint64 // next sequence to claim
	tail  atomic.Uint64 // all sequences below tail are evicted or overwritten
	bytes atomic.Int64  // len(Frame) summed over retained (and in-flight) messages and joins

	marks atomic.Pointer[[]*Mark] // copy-on-write; nil until the first NewMark
	joins joinLog                 // stored join frames, beside the slots
	joinN atomic.Int32            // joins.n, readable without the lock
}

// New returns an empty Ring. It allocates no slots: see the package documentation.
// Negative Size, History or MaxBytes count as zero (the default).
func New(cfg Config) *Ring {
	history := cfg.History
	if history <= 0 {
		history = DefaultHistory
	}
	size := cfg.Size
	if size <= 0 {
		size = max(DefaultSize, 2*history)
	}
	size = max(size, 2) // the slot protocol tells "claimed s" from "s-Size ready" only if Size >= 2
	shift := uint(bits.Len(uint(size - 1)))
	n := uint64(1) << shift
	// Chunks of about sqrt(Size) slots (at least 16, at most Size) keep both the table and one
	// chunk small: 32 pointers and 32 slots for the default 1024.
	cs := min(max((shift+1)/2, 4), shift)
	hold := cfg.Hold
	if hold <= 0 {
		hold = max(cfg.MaxBytes, 0)
	}
	return &Ring{
		size:       n,
		mask:       n - 1,
		chunkShift: cs,
		history:    uint64(history),
		window:     n - n/4,
		maxBytes:   max(cfg.MaxBytes, 0),
		hold:       hold,
		budget:     cfg.Budget,
	}
}

// Size returns the slot count: the most messages the ring holds.
func (r *Ring) Size() int { return int(r.size) }

// Head returns the next sequence to be claimed. All sequences below it have been claimed;
// some may still be in flight (Read reports NotReady for them).
func (r *Ring) Head() uint64 { return r.head.Load() }

// Tail returns the oldest sequence not yet evicted or overwritten; below it Read reports Lost
// (except, rarely, for a message that was still in flight when the tail passed it).
func (r *Ring) Tail() uint64 { return r.tail.Load() }

// Bytes returns the frame bytes the ring retains, counting messages being published.
func (r *Ring) Bytes() int64 { return r.bytes.Load() }

// Len returns the number of retained messages: Head - Tail, at most Size.
func (r *Ring) Len() int {
	t := r.tail.Load() // tail before head: the difference cannot go negative
	h := r.head.Load()
	return int(min(h-t, r.size))
}

// Publish stores m and returns its sequence number. Safe from any goroutine. One atomic add
// claims the sequence; the slot is written, then its sequence word published. Publish never
// waits for readers; it may only wait, briefly, for the producer that claimed the same slot
// one lap earlier (or for an eviction of that message) to finish. Afterwards it evicts the
// oldest messages while the ring or the Budget is over its byte cap, never m itself and never
// a message at or above a Mark.
//
// m must not be nil, and neither m nor m.Frame may be modified afterwards.
func (r *Ring) Publish(m *Message) uint64 {
	s := r.claim(m)
	r.fill(s, m)
	return s
}

// claim counts m's bytes and claims its sequence: the first half of Publish, split out so tests
// can hold a publish in flight.
func (r *Ring) claim(m *Message) uint64 {
	n := int64(len(m.Frame))
	r.bytes.Add(n) // counted before m is visible, so an eviction can never make bytes negative
	r.budget.add(n)
	return r.head.Add(1) - 1
}

// fill writes m into the slot of its claimed sequence s, publishes it and evicts.
func (r *Ring) fill(s uint64, m *Message) {
	sl := r.slotFor(s)
	prev := uint64(0) // the word that says the previous occupant is finished
	if s >= r.size {
		prev = s - r.size + 1
	}
	for spins := 0; ; spins++ {
		v := sl.seq.Load()
		if (v == prev || v == prev|evictedBit) && sl.seq.CompareAndSwap(v, s) {
			break
		}
		if spins > 16 {
			runtime.Gosched() // the producer (or evictor) one lap earlier is descheduled
		}
	}
	// The slot word now says "s claimed": readers of s-Size see Lost, readers of s NotReady.
	if old := sl.msg.Swap(m); old != nil {
		// We took over a ready (not evicted) message s-Size: its bytes are ours to return,
		// and the tail must move past it.
		r.release(int64(len(old.Frame)))
		r.advanceTail(s - r.size + 1)
	}
	sl.seq.Store(s + 1)

	if r.over() {
		r.trim(min(s, r.holdFloor()))
	}
}

// Read returns the message at sequence seq and Ready, or nil and why not. Safe from any
// goroutine concurrently with Publish; it never allocates and never blocks. The message stays
// valid (immutable) for as long as the caller holds it, even after it is evicted.
func (r *Ring) Read(seq uint64) (*Message, Status) {
	sl := r.slotIfAllocated(seq)
	if sl == nil {
		return nil, NotReady // no producer reached this chunk yet
	}
	v := sl.seq.Load()
	if v == seq+1 {
		m := sl.msg.Load()
		if m != nil && sl.seq.Load() == v {
			return m, Ready
		}
		return nil, Lost // overwritten or evicted between the two loads
	}
	if v&^markBits >= seq+1 {
		return nil, Lost // a newer lap, or seq itself marked evicted
	}
	return nil, NotReady
}

// slotFor returns the slot of sequence s, allocating the table and the chunk if needed.
func (r *Ring) slotFor(s uint64) *slot {
	t := r.table.Load()
	if t == nil {
		nt := &table{chunks: make([]atomic.Pointer[chunk], r.size>>r.chunkShift)}
		if r.table.CompareAndSwap(nil, nt) {
			t = nt
		} else {
			t = r.table.Load()
		}
	}
	i := s & r.mask
	cp := &t.chunks[i>>r.chunkShift]
	c := cp.Load()
	if c == nil {
		nc := make(chunk, 1<<r.chunkShift)
		if cp.CompareAndSwap(nil, &nc) {
			c = &nc
		} else {
			c = cp.Load()
		}
	}
	return &(*c)[i&(1<<r.chunkShift-1)]
}

// slotIfAllocated returns the slot of sequence s, or nil if its chunk does not exist yet.
func (r *Ring) slotIfAllocated(s uint64) *slot {
	t := r.table.Load()
	if t == nil {
		return nil
	}
	i := s & r.mask
	c := t.chunks[i>>r.chunkShift].Load()
	if c == nil {
		return nil
	}
	return &(*c)[i&(1<<r.chunkShift-1)]
}

// advanceTail moves the tail forward to at least t.
func (r *Ring) advanceTail(t uint64) {
	for {
		cur := r.tail.Load()
		if cur >= t || r.tail.CompareAndSwap(cur, t) {
			return
		}
	}
}

// spinWait yields the processor while another goroutine finishes a short non-blocking step.
func spinWait() { runtime.Gosched() }
