package server

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/server/store"
)

// Counters for /metrics and /varz (SPEC 5). The hot path pays a plain add
// to a field of its own loop: each loop owns a loopCounters that only it
// writes, and a scrape asks every loop, in a task on the loop, to copy
// its counters out (snapshot). No shared atomic is written per message or
// per delivery. Rare events (refusals at accept) use the server's atomics.

// loopCounters are one loop's counters since start, written by the loop
// only.
type loopCounters struct {
	accepted   uint64
	messagesIn uint64 // messages published by this loop's members
	bytesIn    uint64 // their frame bytes
	deliveries uint64 // messages (live, history, joins) written to members
	bytesOut   uint64 // their frame bytes
	closes     [closeReasons]uint64
	hsFailures [closeReasons]uint64 // TLS connections closed before the handshake was done, by reason
	codes      [closeCodes]uint64   // close frames sent, by code - 1000
	dropped    [dropReasons]uint64
	// Peer sessions (SPEC 1.5): messages accepted from peers, messages
	// sent to peers, and messages a peer sent that the channel had.
	peerIn, peerOut, peerDuplicates uint64
}

// closeCodes is the range of close codes counted: 1000..1015.
const closeCodes = 16

// Reasons a message is dropped.
const (
	dropSlow     = iota // not delivered to a member closed as a slow consumer
	dropLapped          // not delivered to a member lapped by the ring
	dropTooLarge        // a message over MaxMessage (closed 1009)
	dropInvalid         // a text message with invalid UTF-8 (closed 1007)
	dropReasons
)

var dropNames = [dropReasons]string{"slow_consumer", "lapped", "too_large", "invalid_utf8"}

// loopSnapshot is what a snapshot task copies out of its loop.
type loopSnapshot struct {
	mu    sync.Mutex
	ctr   loopCounters
	conns int
	at    time.Time // when it was taken; zero before the first
}

// LoopMetrics are one event loop's figures.
type LoopMetrics struct {
	Conns      int    // connections owned by the loop now
	Accepted   uint64 // connections admitted since start
	MessagesIn uint64
	Deliveries uint64
}

// Metrics is a snapshot of the server's figures: counters since start and
// gauges now. Names in the maps are fixed sets (close reasons, drop
// reasons, refusal reasons), never a uid, channel or address.
type Metrics struct {
	Stats
	Draining bool

	Accepted   uint64            // connections admitted at accept
	Refused    map[string]uint64 // connections refused at accept, by reason
	MessagesIn uint64            // messages published by clients
	BytesIn    uint64            // their frame bytes
	Deliveries uint64            // messages written to members (live and history)
	BytesOut   uint64            // their frame bytes
	// Closes counts closed connections by why they ended (close.go's
	// names in snake case: "eof", "slow_consumer", "tls_error", ...).
	Closes map[string]uint64
	// HandshakeFailures counts TLS connections closed before their
	// handshake was done, by the same names.
	HandshakeFailures map[string]uint64
	CloseCodes        map[int]uint64    // close frames sent, by code
	Dropped           map[string]uint64 // messages dropped, by reason

	HistoryMessages int64 // messages and joins retained by all channels
	HistoryBytes    int64 // their frame bytes

	// Peering (SPEC 1.5): sessions exchanging messages now, messages
	// accepted from peers, sent to peers, and sent by a peer that the
	// channel already had (loop prevention at work).
	PeerSessions   int64
	PeerIn         uint64
	PeerOut        uint64
	PeerDuplicates uint64

	// Store is the history store's figures (--history-dir); nil without
	// one.
	Store *store.Stats
	// NATS is the cluster link's figures (--nats); nil without.
	NATS *NATSStats

	Loops []LoopMetrics
}

// snapshotWait bounds how long a snapshot waits for a busy loop; a loop
// that does not answer in time is reported from its previous snapshot.
const snapshotWait = time.Second

// Metrics collects the figures. It runs a short task on every event loop
// and waits for them at most until ctx ends or a second has passed.
func (s *Server) Metrics(ctx context.Context) Metrics {
	loops := *s.loops.Load()
	ctx, cancel := context.WithTimeout(ctx, snapshotWait)
	defer cancel()
	s.eachLoop(ctx, (*loop).snapshot) // a loop late past ctx: its last snapshot stands

	m := Metrics{
		Stats:             s.Stats(),
		Draining:          s.lameDuck.Load(),
		Refused:           s.refusals(),
		Closes:            make(map[string]uint64),
		HandshakeFailures: make(map[string]uint64),
		CloseCodes:        make(map[int]uint64),
		Dropped:           make(map[string]uint64),
		HistoryBytes:      s.budget.Used(),
		HistoryMessages:   s.reg.retained(),
		PeerSessions:      s.peerSessions.Load(),
		Store:             s.storeStats(),
		NATS:              s.natsStats(),
		Loops:             make([]LoopMetrics, len(loops)),
	}
	for i, l := range loops {
		l.snap.mu.Lock()
		c, conns := l.snap.ctr, l.snap.conns
		l.snap.mu.Unlock()
		m.Loops[i] = LoopMetrics{Conns: conns, Accepted: c.accepted, MessagesIn: c.messagesIn, Deliveries: c.deliveries}
		m.Accepted += c.accepted
		m.MessagesIn += c.messagesIn
		m.BytesIn += c.bytesIn
		m.Deliveries += c.deliveries
		m.BytesOut += c.bytesOut
		m.PeerIn += c.peerIn
		m.PeerOut += c.peerOut
		m.PeerDuplicates += c.peerDuplicates
		for r := range closeReasons {
			if n := c.closes[r]; n > 0 {
				m.Closes[closeReason(r).label()] += n
			}
			if n := c.hsFailures[r]; n > 0 {
				m.HandshakeFailures[closeReason(r).label()] += n
			}
		}
		for i, n := range c.codes {
			if n > 0 {
				m.CloseCodes[1000+i] += n
			}
		}
		for r, n := range c.dropped {
			m.Dropped[dropNames[r]] += n
		}
	}
	return m
}

// snapshot copies the loop's counters out, on the loop.
func (l *loop) snapshot() {
	l.snap.mu.Lock()
	l.snap.ctr = l.ctr
	l.snap.conns = len(l.conns)
	l.snap.at = time.Now()
	l.snap.mu.Unlock()
}

// countClose records why a connection closed, on its loop; a TLS
// connection that had not finished its handshake counts as a handshake
// failure too.
func (c *conn) countClose(r closeReason, wasState connState) {
	ctr := &c.l.ctr
	ctr.closes[r]++
	if c.s.opts.TLS != nil && !c.s.opts.Plain && (wasState == stHello || wasState == stQueued || wasState == stHandshake) {
		ctr.hsFailures[r]++
	}
}

// countCode records a close frame sent.
func (c *conn) countCode(code ws.StatusCode) {
	if i := int(code) - 1000; i >= 0 && i < closeCodes {
		c.l.ctr.codes[i]++
	}
}

// label is the reason's name as a metric label value: snake case.
func (r closeReason) label() string { return strings.ReplaceAll(r.String(), " ", "_") }

// refusals are the accept-time refusals by reason.
func (s *Server) refusals() map[string]uint64 {
	return map[string]uint64{
		"max_conns":         uint64(s.refusedMax.Load()),
		"rate_limit":        uint64(s.refusedRate.Load()),
		"max_conns_per_ip":  uint64(s.refusedPerIP.Load()),
		"not_trusted_proxy": uint64(s.refusedUntrusted.Load()),
	}
}

// retained counts the messages and joins all channels retain, outside the
// registry's lock (a scrape must not hold up joins for a walk).
func (r *registry) retained() int64 {
	r.mu.Lock()
	chs := make([]*channel, 0, len(r.m))
	for _, ch := range r.m {
		chs = append(chs, ch)
	}
	r.mu.Unlock()
	var n int64
	for _, ch := range chs {
		n += int64(ch.ring.HistorySpan().Len())
	}
	return n
}

// storeStats returns the history store's figures, nil without a store.
func (s *Server) storeStats() *store.Stats {
	if s.store == nil {
		return nil
	}
	st := s.store.Stats()
	return &st
}
