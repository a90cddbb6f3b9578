package ring

import "sync"

// JoinAt is a stored join frame (SPEC 1.3) and its place in the channel's one total order: it
// comes right after data message Pos-1 and before data message Pos.
type JoinAt struct {
	Msg *Message
	Pos uint64
}

// joinLog keeps a channel's stored join frames beside the ring, not in it. A join frame is
// history, never traffic: no live reader ever reads one, so keeping them out of the slots means
// a burst of joins can neither lap a reader nor count as its lag (a channel of 15,000 members
// joins in seconds). A joiner's replay merges the two by position (HistorySpan).
//
// Joins are rare next to messages, so a mutex guards the log; Publish never takes it unless a
// byte cap makes it evict.
type joinLog struct {
	mu    sync.Mutex
	ents  []JoinAt // circular, grown on demand up to the history limit
	first int      // index of the oldest entry
	n     int      // entries held
}

// at returns the i-th oldest entry. Call with mu held.
func (j *joinLog) at(i int) *JoinAt { return &j.ents[(j.first+i)%len(j.ents)] }

// pushLocked appends e, dropping and returning the oldest entry when limit entries are held.
func (j *joinLog) pushLocked(e JoinAt, limit int) (dropped *Message) {
	if j.n == limit {
		dropped = j.popLocked()
	}
	if j.n == len(j.ents) {
		grown := make([]JoinAt, min(max(2*len(j.ents), 4), limit))
		for i := range j.n {
			grown[i] = *j.at(i)
		}
		j.ents, j.first = grown, 0
	}
	*j.at(j.n) = e
	j.n++
	return dropped
}

// popLocked removes and returns the oldest entry's message; the log must not be empty.
func (j *joinLog) popLocked() *Message {
	e := j.at(0)
	m := e.Msg
	*e = JoinAt{}
	j.first = (j.first + 1) % len(j.ents)
	j.n--
	return m
}

// PublishJoin stores m, a member's join frame, in the history after every message published
// so far. It is replayed to later joiners (HistorySpan) and never read live. The log keeps at
// most the history limit of join frames; they count against the byte caps like messages and
// are evicted with them, oldest first. m must not be modified afterwards.
func (r *Ring) PublishJoin(m *Message) {
	r.Join(m, nil)
}

// Join is what a new member does, in one step: it takes the member's history (HistorySpan),
// lowers mark (if not nil) to the span's Start so that the byte caps keep the history until the
// member has read it, and stores m, the member's join frame, right after the span. Two members
// that join at once are ordered: the later one's history holds the earlier one's join frame.
func (r *Ring) Join(m *Message, mark *Mark) Span {
	n := int64(len(m.Frame))
	r.bytes.Add(n)
	r.budget.add(n)
	j := &r.joins
	j.mu.Lock()
	h := r.head.Load()
	sp := r.spanLocked(h)
	if mark != nil {
		mark.Lower(sp.Start)
	}
	dropped := j.pushLocked(JoinAt{Msg: m, Pos: h}, int(r.history))
	r.joinN.Store(int32(j.n))
	j.mu.Unlock()
	if dropped != nil {
		r.release(int64(len(dropped.Frame)))
	}
	r.Trim()
	return sp
}

// Joins returns the number of stored join frames.
func (r *Ring) Joins() int { return int(r.joinN.Load()) }

// evictJoin drops the oldest stored join frame if it is older than data message t (the oldest
// the ring retains), so that eviction goes oldest first across both, and reports whether it
// dropped one.
func (r *Ring) evictJoin(t uint64) bool {
	j := &r.joins
	j.mu.Lock()
	if j.n == 0 || j.at(0).Pos > t {
		j.mu.Unlock()
		return false
	}
	m := j.popLocked()
	r.joinN.Store(int32(j.n))
	j.mu.Unlock()
	r.release(int64(len(m.Frame)))
	return true
}

// releaseJoins drops every stored join frame (Release).
func (r *Ring) releaseJoins() {
	j := &r.joins
	j.mu.Lock()
	var n int64
	for j.n > 0 {
		n += int64(len(j.popLocked().Frame))
	}
	j.ents, j.first = nil, 0
	r.joinN.Store(0)
	j.mu.Unlock()
	r.release(n)
}
