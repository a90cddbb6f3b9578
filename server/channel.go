package server

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/mles/mles/ring"
	"github.com/mles/mles/server/store"
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
	// orderBase places the channel's ring sequences in its stored order
	// (persist.go); set once, when the history is loaded.
	orderBase uint64

	// mu guards members. Lock order: registry.mu before channel.mu (the
	// idle sweep holds the registry's while it looks at each channel's);
	// never the other way round, and neither across I/O.
	mu      sync.Mutex
	members map[memberKey]*conn
	linked  bool        // link ran: links and the NATS consumer run (peer.go)
	links   []*peerLink // sessions to the --peer servers while members is not empty (peer.go)
	syncing int         // links whose first resync is not in yet (peersync.go)
	held    []*conn     // joiners waiting for it
	// incoming are the synced sessions peers dialed, by their server id
	// (peerdedup.go).
	incoming map[string]*conn
	syncEnd  *time.Timer // releases them at peerSyncWait anyway

	peer atomic.Pointer[chanPeer] // peering state, made on first use (peer.go)
	nats atomic.Pointer[chanNATS] // state on NATS, made on first use (natssub.go)
	gone atomic.Bool              // swept from the registry: its links dial no more
}

// registry maps channel names to channels.
type registry struct {
	// mu guards m and peak. Lock order: registry.mu before channel.mu.
	mu sync.Mutex
	m  map[string]*channel
	// store is the history store (--history-dir), told about swept
	// channels; nil without one.
	store *store.Store
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
	ch = r.getLocked(s, name)
	ch.mu.Lock()
	defer ch.mu.Unlock()
	old = ch.members[key]
	if old != nil && !s.opts.ReplaceDuplicate {
		return nil, nil, false
	}
	ch.members[key] = c
	ch.lastActive.Store(now)
	if len(ch.members) == 1 && !ch.linked && (len(s.peers) > 0 || s.bus != nil) {
		s.link(ch) // joins that were not held (peersync.go) start them here
	}
	return ch, old, true
}

// channelFor returns the channel called name, creating it, without
// joining it (a session a peer dialed).
func (r *registry) channelFor(s *Server, name string) *channel {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.getLocked(s, name)
}

// getLocked returns the channel called name, creating it. Call with mu
// held.
func (r *registry) getLocked(s *Server, name string) *channel {
	ch := r.m[name]
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
	return ch
}

// leave removes c from its channel's member set unless another member
// already took its key over.
func (r *registry) leave(ch *channel, key memberKey, c *conn, now int64) {
	ch.mu.Lock()
	if ch.members[key] == c {
		delete(ch.members, key)
		if len(ch.members) == 0 {
			ch.unlink()
		}
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
		if len(ch.members) == 0 && ch.subscribers() == 0 { // peer sessions are no members
			delete(r.m, name)
			ch.gone.Store(true)
			ch.ring.Release()
			if r.store != nil {
				r.store.Drop(name)
			}
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

// subscribers counts the channel's readers on every loop: members and
// peer sessions.
func (ch *channel) subscribers() (n int) {
	for i := range ch.groups {
		if g := ch.groups[i].Load(); g != nil {
			n += int(g.n.Load())
		}
	}
	return n
}
