package server

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"

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

// group is the set of a channel's members owned by one event loop. The
// publisher marks it dirty and wakes its loop once per burst; the loop then
// drains every member with one write each.
type group struct {
	ch *channel
	l  *loop

	dirty atomic.Bool  // a drain is scheduled and has not started yet
	n     atomic.Int32 // len(subs), readable from any loop
	// mark is at or below the cursor of every member of the group, so
	// the ring's byte caps never evict what they have not read yet.
	mark *ring.Mark

	subs []*conn // owned by l
	run  gnet.RunnableFunc
}

// groupFor returns loop l's group of ch, creating it. Only l calls it for
// its own index, so a plain store suffices.
func (ch *channel) groupFor(l *loop) *group {
	if g := ch.groups[l.idx].Load(); g != nil {
		return g
	}
	g := &group{ch: ch, l: l, mark: ch.ring.NewMark()}
	g.run = func(context.Context) error {
		g.l.tick()
		g.drain()
		g.l.runPending()
		return nil
	}
	ch.groups[l.idx].Store(g)
	return g
}

func (g *group) add(c *conn) {
	c.grp = g
	c.grpIdx = int32(len(g.subs))
	g.subs = append(g.subs, c)
	g.n.Store(int32(len(g.subs)))
}

func (g *group) remove(c *conn) {
	i, last := int(c.grpIdx), len(g.subs)-1
	g.subs[i] = g.subs[last]
	g.subs[i].grpIdx = int32(i)
	g.subs[last] = nil
	g.subs = g.subs[:last]
	g.n.Store(int32(len(g.subs)))
	c.grp = nil
	if last == 0 {
		g.mark.Set(ring.NoMark)
	}
}

// drain delivers everything new in the ring to each member of the group.
// The dirty flag is cleared before reading, so a publish that lands during the
// drain marks the group again and nothing is missed. Then it raises the
// group's mark to the lowest cursor and lets the ring trim what every
// member has read, should a byte cap be exceeded.
func (g *group) drain() {
	g.dirty.Store(false)
	l := g.l
	subs := append(l.subs[:0], g.subs...) // drains may close, and closing edits g.subs
	low := uint64(ring.NoMark)
	for _, c := range subs {
		c.drain()
		if c.grp == g {
			low = min(low, c.cursor)
		}
	}
	clear(subs)
	l.subs = subs[:0]
	g.mark.Set(low)
	g.ch.ring.Trim()
}

// publish stores m in the channel's ring and wakes every loop that has
// members. The publisher's own loop drains before its callback returns;
// other loops get one Execute per burst, not one per member.
func (ch *channel) publish(m *ring.Message, from *loop) {
	ch.ring.Publish(m)
	ch.lastActive.Store(from.now)
	for i := range ch.groups {
		g := ch.groups[i].Load()
		if g == nil || g.n.Load() == 0 || !g.dirty.CompareAndSwap(false, true) {
			continue
		}
		if g.l == from {
			from.schedule(g)
		} else if err := g.l.el.Execute(context.Background(), g.run); err != nil {
			g.dirty.Store(false) // engine stopping
		}
	}
}
