package server

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/panjf2000/gnet/v2"
)

// wakeConn stands in for a gnet connection in the gate's unit tests: the
// gate only ever calls Wake on it, which is counted.
type wakeConn struct {
	gnet.Conn // nil: any other method panics
	name      string
	wakes     atomic.Int32
}

func (c *wakeConn) Wake(gnet.AsyncCallback) error { c.wakes.Add(1); return nil }

type gateClient struct {
	c *wakeConn
	t *hsTicket
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// take asks the gate for a slot for a new connection named name from a.
func take(t *testing.T, g *hsGate, a netip.Addr, name string, wantGranted bool) *gateClient {
	t.Helper()
	c := &wakeConn{name: name}
	tk, granted := g.acquire(c, a)
	if granted != wantGranted {
		t.Fatalf("%s: granted %v at once, want %v (busy %d)", name, granted, wantGranted, g.busy)
	}
	return &gateClient{c: c, t: tk}
}

// granted lists, in the order given, the clients that hold a slot, and
// checks that exactly those were woken (once) since the last call.
func checkGranted(t *testing.T, g *hsGate, want []*gateClient, others ...*gateClient) {
	t.Helper()
	for _, gc := range want {
		if !g.isGranted(gc.t) {
			t.Fatalf("%s: not granted", gc.c.name)
		}
		if n := gc.c.wakes.Swap(0); n != 1 {
			t.Fatalf("%s: woken %d times, want 1", gc.c.name, n)
		}
	}
	for _, gc := range others {
		if g.isGranted(gc.t) {
			t.Fatalf("%s: granted, want waiting", gc.c.name)
		}
		if n := gc.c.wakes.Load(); n != 0 {
			t.Fatalf("%s: woken %d times while waiting", gc.c.name, n)
		}
	}
}

func checkEmpty(t *testing.T, g *hsGate) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.busy != 0 || len(g.addrs) != 0 || len(g.turn) != 0 {
		t.Fatalf("gate not empty after every ticket ended: busy %d, %d addresses, %d in turn", g.busy, len(g.addrs), len(g.turn))
	}
}

// TestHSGateOrder: one address's waiters are served in arrival order.
func TestHSGateOrder(t *testing.T) {
	g := newHSGate(4) // perAddr 2
	a := addr("192.0.2.1")
	h1 := take(t, g, a, "h1", true)
	h2 := take(t, g, a, "h2", true)
	var w []*gateClient
	for _, n := range []string{"w1", "w2", "w3", "w4"} {
		w = append(w, take(t, g, a, n, false))
	}
	g.release(h1.t)
	checkGranted(t, g, w[:1], w[1:]...)
	g.release(h2.t)
	checkGranted(t, g, w[1:2], w[2:]...)
	g.release(w[0].t)
	checkGranted(t, g, w[2:3], w[3:]...)
	g.release(w[1].t)
	checkGranted(t, g, w[3:4])
	g.release(w[2].t)
	g.release(w[3].t)
	checkEmpty(t, g)
}

// TestHSGateShare: one address holds at most half the slots, so however
// many connections it opens, another address gets a slot at once; and a
// freed slot goes to the addresses with waiters in turn.
func TestHSGateShare(t *testing.T) {
	g := newHSGate(4)
	bad, c1, c2 := addr("198.51.100.7"), addr("192.0.2.1"), addr("192.0.2.2")
	var holders, queued []*gateClient
	holders = append(holders, take(t, g, bad, "bad0", true), take(t, g, bad, "bad1", true))
	for i := range 100 {
		queued = append(queued, take(t, g, bad, "badq"+string(rune('a'+i%26)), false))
	}
	// The attacker's 100 waiters do not stand before another address.
	x := take(t, g, c1, "x", true)
	y := take(t, g, c2, "y", true)
	// Full now: four held. More from c1 and c2 wait.
	x2 := take(t, g, c1, "x2", false)
	y2 := take(t, g, c2, "y2", false)
	// The attacker's slot goes to c1 and c2 (in turn), not to its own
	// waiters: it is at its share.
	g.release(holders[0].t)
	checkGranted(t, g, []*gateClient{x2}, y2, queued[0])
	g.release(holders[1].t)
	checkGranted(t, g, []*gateClient{y2}, queued[0])
	// c1 and c2 are done: the attacker's waiters get slots, in order, up
	// to its share.
	for _, c := range []*gateClient{x, y, x2, y2} {
		g.release(c.t)
	}
	checkGranted(t, g, queued[:2], queued[2:]...)
	for _, c := range queued {
		g.release(c.t)
	}
	checkEmpty(t, g)
}

// TestHSGateRoundRobin: with one slot per address, freed slots go to the
// waiting addresses in turn, not to the one with the most waiters.
func TestHSGateRoundRobin(t *testing.T) {
	g := newHSGate(2) // perAddr 1
	a, b, c := addr("10.0.0.1"), addr("10.0.0.2"), addr("10.0.0.3")
	ha := take(t, g, a, "ha", true)
	hb := take(t, g, b, "hb", true)
	a1, a2, a3 := take(t, g, a, "a1", false), take(t, g, a, "a2", false), take(t, g, a, "a3", false)
	c1 := take(t, g, c, "c1", false)
	b1 := take(t, g, b, "b1", false)
	// a and b are at their share, so only c waits in turn. a's holder
	// leaves: a joins the turn behind c, and c1 gets the slot.
	g.release(ha.t)
	checkGranted(t, g, []*gateClient{c1}, a1, a2, a3, b1)
	g.release(hb.t) // turn a, b: a1
	checkGranted(t, g, []*gateClient{a1}, a2, a3, b1)
	g.release(a1.t) // turn b, a: b1, though a has more waiters
	checkGranted(t, g, []*gateClient{b1}, a2, a3)
	g.release(c1.t) // turn a: a2
	checkGranted(t, g, []*gateClient{a2}, a3)
	// A slot is free, but a is at its share (half the slots): a3 waits
	// for a's own slot, so that one address never holds them all.
	g.release(b1.t)
	checkGranted(t, g, nil, a3)
	g.release(a2.t)
	checkGranted(t, g, []*gateClient{a3})
	g.release(a3.t)
	checkEmpty(t, g)
}

// TestHSGateCancel: a waiter that leaves gives up its place, is never
// granted or woken, and a second release of any ticket changes nothing.
func TestHSGateCancel(t *testing.T) {
	g := newHSGate(2)
	a := addr("2001:db8::1")
	h := take(t, g, a, "h", true)
	var w []*gateClient
	for i := range 300 {
		w = append(w, take(t, g, a, "w"+string(rune('a'+i%26)), false))
	}
	// All but the last leave; the queue is compacted on the way.
	for _, c := range w[:299] {
		g.release(c.t)
		g.release(c.t)
	}
	g.mu.Lock()
	qlen := len(g.addrs[a].queue)
	g.mu.Unlock()
	if qlen > 130 {
		t.Fatalf("queue keeps %d entries for 1 live waiter", qlen)
	}
	g.release(h.t)
	g.release(h.t) // twice: must not free a second slot
	checkGranted(t, g, w[299:], w[:299]...)
	if g.busy != 1 {
		t.Fatalf("busy %d after a double release, want 1", g.busy)
	}
	g.release(w[299].t)
	checkEmpty(t, g)
}

// TestHSGateConcurrent: many goroutines acquire and release at random;
// never more than max slots held, never more than perAddr per address,
// every waiter is eventually granted, and nothing is left at the end.
func TestHSGateConcurrent(t *testing.T) {
	const slots, workers, rounds = 8, 16, 2000
	g := newHSGate(slots)
	var held atomic.Int32
	perAddr := make([]atomic.Int32, 4)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range rounds {
				ai := r.IntN(len(perAddr))
				c := &wakeConn{}
				tk, granted := g.acquire(c, netip.AddrFrom4([4]byte{10, 0, 0, byte(ai)}))
				if !granted && r.IntN(4) == 0 {
					g.release(tk) // gives up waiting
					continue
				}
				for !g.isGranted(tk) { // a loop would wait for the Wake
					if c.wakes.Load() > 0 && !g.isGranted(tk) {
						t.Error("woken but not granted")
						return
					}
					runtime.Gosched()
				}
				if n := held.Add(1); n > slots {
					t.Errorf("%d slots held, max %d", n, slots)
				}
				if n := perAddr[ai].Add(1); n > slots/2 {
					t.Errorf("%d slots held by one address, share %d", n, slots/2)
				}
				perAddr[ai].Add(-1)
				held.Add(-1)
				g.release(tk)
			}
		}()
	}
	wg.Wait()
	checkEmpty(t, g)
}
