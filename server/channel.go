package server

import (
	"sync"
	"sync/atomic"

	"github.com/mles/mles/ring"
)

// memberKey identifies a member inside a channel for the duplicate rule
// of SPEC 1.2: the same (uid, channel, auth) may be joined once.
type memberKey struct{ uid, auth string }

// channel is one Mles channel: its ring (traffic and history), its
// members grouped by owning event loop, and its member set.
type channel struct {
	name string
	hid  string // hashed name for logs
	ring *ring.Ring

	// groups[i] holds the members owned by loop i. A loop creates its
	// own group and is the only writer of that group's member list.
	groups []atomic.Pointer[group]

	lastActive atomic.Int64 // unix nanoseconds of the last join, leave or publish

	// mu guards members. Lock order: registry.mu before channel.mu (the
	// idle sweep holds the registry's while it looks at each channel's);
	// never the other way round, and neither across I/O.
	mu      sync.Mutex
	members map[memberKey]*conn
}

// registry maps channel names to channels.
type registry struct {
	// mu guards m and peak. Lock order: registry.mu before channel.mu.
	mu sync.Mutex
	m  map[string]*channel
	// peak is the most channels m held since it was last rebuilt: Go maps
	// never give back their buckets, so sweepIdle rebuilds m once most of
	// them are gone.
	peak int
}

func (r *registry) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m)
}

// join adds c under key to the channel called name, creating the channel
// if needed. With a live member under the same key it either refuses
// (ok false) or, with replace, takes the key over and returns the old
// member for the caller to close.
func (r *registry) join(s *Server, name string, key memberKey, c *conn, now int64) (ch *channel, old *conn, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch = r.m[name]
	if ch == nil {
		ch = &channel{
			name:    name,
			hid:     s.ids.id(name),
			groups:  make([]atomic.Pointer[group], s.opts.Reactors),
			members: make(map[memberKey]*conn),
			ring: ring.New(ring.Config{
				Size:     s.opts.RingSize,
				History:  s.opts.History,
				MaxBytes: s.opts.HistoryBytes,
				// A member may lag this far beyond the history cap
				// before the ring laps it (1008): four of the largest
				// messages at least.
				Hold:   max(s.opts.HistoryBytes, 4*int64(s.opts.MaxMessage)),
				Budget: s.budget,
			}),
		}
		r.m[name] = ch
		r.peak = max(r.peak, len(r.m))
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	old = ch.members[key]
	if old != nil && !s.opts.ReplaceDuplicate {
		return nil, nil, false
	}
	ch.members[key] = c
	ch.lastActive.Store(now)
	return ch, old, true
}

// leave removes c from its channel's member set unless another member
// already took its key over.
func (r *registry) leave(ch *channel, key memberKey, c *conn, now int64) {
	ch.mu.Lock()
	if ch.members[key] == c {
		delete(ch.members, key)
	}
	ch.mu.Unlock()
	ch.lastActive.Store(now)
}

// sweepIdle drops channels without members whose last activity is older
// than cutoff, releasing their history.
func (r *registry) sweepIdle(cutoff int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, ch := range r.m {
		if ch.lastActive.Load() >= cutoff {
			continue
		}
		ch.mu.Lock()
		if len(ch.members) == 0 {
			delete(r.m, name)
			ch.ring.Release()
		}
		ch.mu.Unlock()
	}
	if r.peak >= shrinkMin && len(r.m) < r.peak/4 {
		m := make(map[string]*channel, len(r.m))
		for name, ch := range r.m {
			m[name] = ch
		}
		r.m, r.peak = m, len(m)
	}
}

// shrinkMin is the map size below which sweepIdle does not bother
// rebuilding the registry map.
const shrinkMin = 4096

// releaseAll drops every channel (after the event loops stopped).
func (r *registry) releaseAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, ch := range r.m {
		ch.ring.Release()
		delete(r.m, name)
	}
}
