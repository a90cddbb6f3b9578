package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// loop is the server's state for one gnet event loop. Every field is owned by
// that loop's goroutine, except idx and el, which are immutable, and the
// inbox, which other loops post to.
type loop struct {
	s   *Server
	idx int
	el  gnet.EventLoop

	conns   map[*conn]struct{}
	pending []*group // dirty groups of this loop to drain before the callback returns
	now     int64    // unix nanoseconds, refreshed at the start of each callback

	// Scratch buffers reused by every connection of the loop; none survives
	// a callback.
	batch  []byte  // frames of one member's batch, written at once
	shared []byte  // frames of a group's batch shared by its members at one cursor
	out    []byte  // a response or control frame to send
	plain  []byte  // plaintext out of the TLS bridge
	subs   []*conn // snapshot of a group's members while draining it

	// Groups posted by other loops (loop.post), drained by inboxRun. The
	// only fields other loops touch, under inboxMu and woken.
	inboxMu  sync.Mutex
	inbox    []*group
	woken    atomic.Bool // inboxRun is queued and has not taken the inbox yet
	inboxRun gnet.RunnableFunc

	sweepRun gnet.RunnableFunc
	flushRun gnet.RunnableFunc
	flushing bool // flushRun is queued on the loop and has not run yet

	// Connections waiting for their output to drain: paused members,
	// frames in slices, polite closes. gnet has no writable callback, so a
	// timer brings pumpRun to the loop every pumpInterval while any wait.
	waiting  []*conn
	spare    []*conn
	pumpRun  gnet.RunnableFunc
	pumpT    *time.Timer // created on first use; fires off the loop
	pumpArmd bool        // pumpT is set or pumpRun queued

	// drain counts the connections of a spread drain (drain.go).
	drain struct {
		started       bool
		total, closed int
	}

	ctr  loopCounters // written by this loop only (metrics.go)
	snap loopSnapshot // ctr as of the last snapshot, for scrapes
}

// pumpInterval is how often connections waiting for their output to drain
// are looked at: short enough that a large frame in slices flows at socket
// speed (MaxPending per interval), long enough to cost nothing measurable.
const pumpInterval = 5 * time.Millisecond

// scratchKeep is the capacity above which a scratch buffer is dropped after
// use instead of kept, so that one huge message does not pin memory forever.
const scratchKeep = 256 << 10

func newLoop(s *Server, idx int, el gnet.EventLoop) *loop {
	l := &loop{
		s:     s,
		idx:   idx,
		el:    el,
		conns: make(map[*conn]struct{}),
		plain: make([]byte, 32<<10),
	}
	l.flushRun = func(context.Context) error {
		l.flushing = false
		l.tick()
		l.runPending()
		return nil
	}
	l.inboxRun = func(context.Context) error {
		l.tick()
		l.takeInbox()
		l.runPending()
		return nil
	}
	l.pumpRun = func(context.Context) error {
		l.tick()
		l.pump()
		l.runPending()
		return nil
	}
	l.sweepRun = func(context.Context) error {
		l.tick()
		l.sweep()
		l.runPending()
		return nil
	}
	return l
}

func (l *loop) tick() { l.now = time.Now().UnixNano() }

// sweep enforces deadlines, liveness pings and slow-consumer grace for every
// connection of the loop. It runs on the loop once per tick.
func (l *loop) sweep() {
	for c := range l.conns {
		c.sweep()
	}
}

// closeAll starts graceful shutdown of every connection of the loop, once
// no loop accepts messages any more: a member first gets everything the
// channels accepted (drain, then resume from the waiting list), then 1001.
// One that cannot keep up by Server.shutdownData gets 1008 instead.
func (l *loop) closeAll() {
	l.tick()
	l.takeInbox()
	l.runPending()
	for c := range l.conns {
		c.shutdown()
	}
	l.runPending()
}

// trimScratch drops scratch buffers that grew past scratchKeep.
func (l *loop) trimScratch() {
	if cap(l.batch) > scratchKeep {
		l.batch = nil
	}
	if cap(l.shared) > scratchKeep {
		l.shared = nil
	}
	if cap(l.out) > scratchKeep {
		l.out = nil
	}
}

// wait puts c on the waiting list, once, and arms the pump.
func (l *loop) wait(c *conn) {
	if c.flags&fWaiting != 0 {
		return
	}
	c.flags |= fWaiting
	l.waiting = append(l.waiting, c)
	if l.pumpArmd {
		return
	}
	l.pumpArmd = true
	if l.pumpT == nil {
		el, run := l.el, l.pumpRun
		l.pumpT = time.AfterFunc(pumpInterval, func() {
			_ = el.Execute(context.Background(), run)
		})
		return
	}
	l.pumpT.Reset(pumpInterval)
}

// pump resumes every waiting connection; those still waiting put
// themselves back on the list.
func (l *loop) pump() {
	l.pumpArmd = false
	ws := l.waiting
	l.waiting = l.spare[:0]
	for _, c := range ws {
		c.flags &^= fWaiting
		c.resume()
	}
	clear(ws)
	l.spare = ws[:0]
}
