package ring

import "sync/atomic"

// Budget is a global cap on the frame bytes retained by all the rings that share it
// (SPEC 1.4 [beyond]). A ring whose Publish finds the Budget over its limit evicts its own
// oldest messages until the Budget is within the limit or only the message just published is
// left; it never evicts from other rings. Safe for concurrent use; a nil *Budget is no cap.
type Budget struct {
	used  atomic.Int64
	limit int64 // 0: unlimited
}

// NewBudget returns a Budget of maxBytes; 0 (or less) means unlimited, which still counts
// Used.
func NewBudget(maxBytes int64) *Budget {
	return &Budget{limit: max(maxBytes, 0)}
}

// Used returns the frame bytes currently retained by all rings sharing b.
func (b *Budget) Used() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}

// Limit returns the cap given to NewBudget; 0 means unlimited.
func (b *Budget) Limit() int64 {
	if b == nil {
		return 0
	}
	return b.limit
}

func (b *Budget) add(n int64) {
	if b != nil {
		b.used.Add(n)
	}
}

func (b *Budget) over() bool {
	return b != nil && b.limit > 0 && b.used.Load() > b.limit
}

// over reports whether the ring or its Budget retains more bytes than allowed.
func (r *Ring) over() bool {
	return (r.maxBytes > 0 && r.bytes.Load() > r.maxBytes) || r.budget.over()
}

// release returns n bytes of a dropped message to the ring and the Budget.
func (r *Ring) release(n int64) {
	r.bytes.Add(-n)
	r.budget.add(-n)
}

// Trim evicts the oldest history while a byte cap is exceeded, down to the lowest Mark. Readers
// call it after moving their marks: a message they held back from eviction is history only
// once they have read it. Safe from any goroutine.
func (r *Ring) Trim() {
	if r.over() {
		r.trim(min(r.holdFloor(), r.head.Load()))
	}
}

// trim evicts the oldest messages and stored joins, oldest first across both, while a byte cap
// is exceeded. It never evicts a message at or above limit (the publisher's own message, the
// lowest Mark), and stops at a message still being written: that message's producer trims after
// publishing it, so the caps may be exceeded only while a publish is in flight or a reader
// holds messages back.
func (r *Ring) trim(limit uint64) {
	for r.over() {
		t := r.tail.Load()
		if r.joinN.Load() > 0 && r.evictJoin(t) {
			continue
		}
		if t >= limit {
			return
		}
		sl := r.slotIfAllocated(t)
		if sl == nil {
			return // t's producer has not even allocated its chunk
		}
		v := sl.seq.Load()
		switch {
		case v == t+1: // ready: winning the tail makes t ours to evict
			if r.tail.CompareAndSwap(t, t+1) {
				r.evictSlot(sl, v)
			}
		case v&^markBits >= t+1: // already evicted, or overwritten by a later lap
			r.tail.CompareAndSwap(t, t+1)
		default: // t is still being written
			return
		}
	}
}

// evictSlot drops the ready message whose slot word is v, unless a producer one lap later
// takes the slot over first (then that producer returns the bytes). Between the two stores the
// slot is marked busy, which makes that producer wait: the pointer we clear is never its.
func (r *Ring) evictSlot(sl *slot, v uint64) {
	if !sl.seq.CompareAndSwap(v, v|busyBit) {
		return
	}
	if m := sl.msg.Swap(nil); m != nil {
		r.release(int64(len(m.Frame)))
	}
	sl.seq.Store(v | evictedBit)
}

// Release drops every message and stored join, returns their bytes to the Budget and moves the
// tail to the head; readers then see Lost. Use it when the channel is dropped, after the last Publish has
// returned: a Publish that finishes during Release may leave its message in the ring. Slot
// memory is left to the garbage collector with the Ring.
func (r *Ring) Release() {
	r.advanceTail(r.head.Load())
	r.releaseJoins()
	t := r.table.Load()
	if t == nil {
		return
	}
	for ci := range t.chunks {
		c := t.chunks[ci].Load()
		if c == nil {
			continue
		}
		for si := range *c {
			sl := &(*c)[si]
			idx := uint64(ci)<<r.chunkShift | uint64(si)
			for {
				v := sl.seq.Load()
				if v == 0 || v&markBits == evictedBit {
					break // empty or already evicted
				}
				if v&markBits == 0 && (v-1)&r.mask == idx { // ready
					r.evictSlot(sl, v)
					continue // re-check: a producer may have taken the slot over first
				}
				// Claimed by a producer or busy with an eviction: both finish without waiting.
				// A producer is only here if it raced Release; wait for its message.
				spinWait()
			}
		}
	}
}

// Span is the history a joiner replays: the data messages [Start, End) of the ring and the
// stored join frames among them, in the channel's one order.
type Span struct {
	Start, End uint64
	// Joins are the stored join frames of the history, oldest first; each Pos is in
	// [Start, End]. A reader delivers the joins with Pos <= c before data message c, and those
	// with Pos == End after the last message of the span.
	Joins []JoinAt
}

// Len returns the number of items in the span: messages and stored joins.
func (s Span) Len() int { return int(s.End-s.Start) + len(s.Joins) }

// HistorySpan returns the history a new member replays: the newest min(History, available)
// items (messages and stored join frames, merged in order) before End (the head when called),
// no message older than the tail (evictions), nor older than End-Size+Size/4 (a quarter of the
// ring is headroom, so publishes racing the replay do not lap it), and, with MaxBytes, only as
// many of the newest as fit in MaxBytes. A join older than the oldest message of the span is in
// it only if nothing between them is missing.
//
// The joiner sets its cursor to Start and reads on into live traffic with the same cursor;
// messages at or after End are live. Messages inside the span may still be in flight
// (NotReady); the reader waits for them as for any other. Store the join frame of the joiner
// itself after taking its span: Join does both in one step.
func (r *Ring) HistorySpan() Span {
	r.joins.mu.Lock() // a PublishJoin cannot slip between the head and the joins we see
	defer r.joins.mu.Unlock()
	return r.spanLocked(r.head.Load())
}

// spanLocked is HistorySpan with the join log's lock held and the head loaded as h.
func (r *Ring) spanLocked(h uint64) Span {
	j := &r.joins
	lo := h - min(r.history, r.window, h) // the oldest message the count limit allows
	if t := r.tail.Load(); lo < t {
		lo = min(t, h) // the tail may have moved past h since we loaded it
	}
	if j.n == 0 && r.maxBytes == 0 {
		return Span{Start: lo, End: h}
	}
	// Walk back from the newest item, taking the newer of the next message and the next join.
	s, ji := h, j.n // messages [s, h) and joins [ji, n) are in
	var sum int64
	for count := uint64(0); count < r.history; {
		dataOK := s > lo
		joinOK := ji > 0 && j.at(ji-1).Pos >= lo
		if !dataOK && !joinOK {
			break
		}
		var size int64
		isJoin := joinOK && (!dataOK || j.at(ji-1).Pos >= s)
		if isJoin {
			size = int64(len(j.at(ji - 1).Msg.Frame))
		} else {
			m, st := r.Read(s - 1)
			if st == Lost {
				lo = s // evicted under us: nothing older is contiguous
				continue
			}
			if st == Ready {
				size = int64(len(m.Frame))
			}
		}
		if r.maxBytes > 0 && sum+size > r.maxBytes {
			break
		}
		sum += size
		count++
		if isJoin {
			ji--
		} else {
			s--
		}
	}
	sp := Span{Start: s, End: h}
	if ji < j.n {
		sp.Joins = make([]JoinAt, j.n-ji)
		for i := range sp.Joins {
			sp.Joins[i] = *j.at(ji + i)
		}
	}
	return sp
}

// HistoryStart returns HistorySpan().Start: the first message a new member should replay.
func (r *Ring) HistoryStart() uint64 { return r.HistorySpan().Start }
