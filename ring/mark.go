package ring

import (
	"math"
	"sync/atomic"
)

// NoMark is the value of a Mark that holds nothing back.
const NoMark = math.MaxUint64

// Mark is a reader's low-water mark: the byte caps never evict a message at or above any mark
// of the ring, so they cut history only, never a message that a live reader has not read yet
// (DESIGN: "Byte caps cut history only"). A reader (or a group of readers: the lowest cursor
// among them) keeps its Mark at or below the lowest sequence it still has to read.
//
// Marks do not stop lapping: a producer never waits, and a reader that falls a whole ring behind
// still sees Lost. Nor do they hold back more than Config.Hold bytes beyond the ring's cap: past
// that the oldest go whatever the marks say, and a reader that far behind sees Lost too. So what
// the marks keep is bounded by the ring's size, by Hold, and by how long a slow reader is
// allowed to stay behind.
type Mark struct{ seq atomic.Uint64 }

// NewMark registers a Mark with the ring, at NoMark. Marks live as long as the ring; a reader
// that is done sets its Mark to NoMark.
func (r *Ring) NewMark() *Mark {
	m := &Mark{}
	m.seq.Store(NoMark)
	r.joins.mu.Lock() // rare; any lock that is not on the publish path will do
	var old []*Mark
	if p := r.marks.Load(); p != nil {
		old = *p
	}
	next := append(append(make([]*Mark, 0, len(old)+1), old...), m)
	r.marks.Store(&next)
	r.joins.mu.Unlock()
	return m
}

// Set moves the mark to seq. Safe from any goroutine.
func (m *Mark) Set(seq uint64) { m.seq.Store(seq) }

// Lower moves the mark down to seq if it is above it. Safe from any goroutine, but meant for
// the mark's single owner: concurrent Set and Lower race.
func (m *Mark) Lower(seq uint64) {
	if m.seq.Load() > seq {
		m.seq.Store(seq)
	}
}

// Load returns the mark.
func (m *Mark) Load() uint64 { return m.seq.Load() }

// floor returns the lowest mark, or NoMark.
func (r *Ring) floor() uint64 {
	f := uint64(NoMark)
	p := r.marks.Load()
	if p == nil {
		return f
	}
	for _, m := range *p {
		f = min(f, m.seq.Load())
	}
	return f
}

// holdFloor returns the lowest message the byte caps must keep: the lowest mark, or NoMark once
// the marks hold back more than Hold bytes beyond MaxBytes (Config.Hold).
func (r *Ring) holdFloor() uint64 {
	if r.maxBytes > 0 && r.bytes.Load() > r.maxBytes+r.hold {
		return NoMark
	}
	return r.floor()
}
