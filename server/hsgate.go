package server

import (
	"net/netip"
	"sync"

	"github.com/panjf2000/gnet/v2"
)

// hsGate admits TLS handshakes, at most max at once (Options.MaxHandshakes).
// A connection asks for a slot only once its whole ClientHello has arrived
// (tlsbridge.HelloComplete), so silent and truncated connections never hold
// one. Slots are shared between client addresses (IPv4, IPv6 /64, as for
// MaxConnsPerIP): one address holds at most perAddr of them, addresses with
// waiters are served in turn, and each address's waiters in arrival order.
// A wait for a slot is bounded on its own (the conn's deadline while
// queued) and is not charged to the handshake's timeout.
//
// The gate is shared by all loops. Its mutex guards a few counters and
// queues and is never held across I/O; a grant to a waiter of another loop
// is signalled with gnet's Wake after the mutex is released.
type hsGate struct {
	max, perAddr int

	mu    sync.Mutex
	busy  int                      // slots held
	addrs map[netip.Addr]*gateAddr // addresses holding or waiting for slots
	turn  []*gateAddr              // addresses with waiters below perAddr, served front first
}

// gateAddr is one client address's share of the gate.
type gateAddr struct {
	key    netip.Addr
	held   int
	queue  []*hsTicket // waiters in arrival order; cancelled ones are skipped
	live   int         // waiters in queue not cancelled
	inTurn bool        // in hsGate.turn
}

// hsTicket is one connection's claim on the gate, from its complete
// ClientHello until its handshake ends or it closes.
type hsTicket struct {
	gc      gnet.Conn
	a       *gateAddr
	granted bool // holds a slot; guarded by hsGate.mu
	done    bool // released or cancelled; guarded by hsGate.mu
}

func newHSGate(slots int) *hsGate {
	return &hsGate{max: slots, perAddr: max(1, slots/2), addrs: make(map[netip.Addr]*gateAddr)}
}

// acquire claims a slot for gc, whose address key is k. The ticket holds
// one at once (granted) or waits in line: the gate wakes gc when its turn
// comes, and the loop then sees isGranted.
func (g *hsGate) acquire(gc gnet.Conn, k netip.Addr) (t *hsTicket, granted bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.addrs[k]
	if a == nil {
		a = &gateAddr{key: k}
		g.addrs[k] = a
	}
	t = &hsTicket{gc: gc, a: a}
	// No address waits while a slot is free and its address is below its
	// share (dispatch keeps it so), so a free slot here means nobody of
	// this address is ahead of t either.
	if g.busy < g.max && a.held < g.perAddr && a.live == 0 {
		g.grantLocked(t)
		return t, true
	}
	a.queue = append(a.queue, t)
	a.live++
	g.enterTurnLocked(a)
	return t, false
}

// isGranted reports whether t holds a slot. Its loop asks after a Wake.
func (g *hsGate) isGranted(t *hsTicket) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return t.granted && !t.done
}

// release ends t's claim: its handshake ended, or its connection closed
// while it held a slot or waited. A freed slot goes to the next waiter,
// which is woken. Calling it again does nothing.
func (g *hsGate) release(t *hsTicket) {
	var wake []gnet.Conn
	g.mu.Lock()
	if t.done {
		g.mu.Unlock()
		return
	}
	t.done = true
	a := t.a
	if t.granted {
		t.granted = false
		g.busy--
		a.held--
		g.enterTurnLocked(a)
		wake = g.dispatchLocked()
	} else {
		a.live--
		if n := len(a.queue); n > 64 && a.live < n/2 {
			a.compactLocked()
		}
	}
	if a.held == 0 && a.live == 0 && !a.inTurn {
		delete(g.addrs, a.key)
	}
	g.mu.Unlock()
	for _, gc := range wake {
		_ = gc.Wake(nil)
	}
}

// dispatchLocked hands free slots to waiters, one address at a time in
// turn, and returns the connections to wake.
func (g *hsGate) dispatchLocked() []gnet.Conn {
	var wake []gnet.Conn
	for g.busy < g.max && len(g.turn) > 0 {
		a := g.turn[0]
		g.turn[0] = nil
		g.turn = g.turn[1:]
		a.inTurn = false
		var t *hsTicket
		for len(a.queue) > 0 && t == nil {
			t = a.queue[0]
			a.queue[0] = nil
			a.queue = a.queue[1:]
			if t.done {
				t = nil
			}
		}
		if t == nil { // every waiter left
			if a.held == 0 {
				delete(g.addrs, a.key)
			}
			continue
		}
		a.live--
		g.grantLocked(t)
		wake = append(wake, t.gc)
		g.enterTurnLocked(a)
	}
	return wake
}

func (g *hsGate) grantLocked(t *hsTicket) {
	t.granted = true
	g.busy++
	t.a.held++
}

// enterTurnLocked puts a at the back of the turn when it has waiters and
// room in its share.
func (g *hsGate) enterTurnLocked(a *gateAddr) {
	if !a.inTurn && a.live > 0 && a.held < g.perAddr {
		a.inTurn = true
		g.turn = append(g.turn, a)
	}
}

// compactLocked drops cancelled waiters from the queue, which many
// connections that gave up waiting would otherwise keep.
func (a *gateAddr) compactLocked() {
	q := a.queue[:0]
	for _, t := range a.queue {
		if !t.done {
			q = append(q, t)
		}
	}
	clear(a.queue[len(q):])
	a.queue = q
}
