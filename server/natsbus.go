package server

// Cluster on NATS (SPEC 6, --nats). The server joins a NATS cluster, and a
// channel spans every server that has members of it. The history and the
// order are a JetStream stream's: one subject per channel and kind
// (prefix.<hash>.m for messages, .j for stored join frames), max messages
// per subject = --limit.
//
// While the stream answers, a local client's message does not enter the
// channel's ring: the loop queues it (natsBus.send, no I/O, no wait) for
// the bus's publisher goroutine (natspub.go), which publishes it to
// JetStream; it comes back as the stream republishes it (natssub.go), in
// the stream's order, and enters the ring there like every other server's
// message. So every member on every server gets the channel's messages in
// one order, the stream's, and each once; the sender's own message is
// marked with its connection and skipped for it.
//
// While the stream does not answer (NATS unreachable at once; a stall of
// the stream, such as a JetStream leader election, after 2 s) or the queue
// to it is full, a local message is delivered to the local members at
// once, and queued for the stream marked as delivered here, so that the
// other servers get it once NATS takes it and this one does not deliver it
// twice (natspub.go).

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mles/mles/ring"
)

// Envelope of a message on NATS: kind, flags, origin (this process),
// the member's connection id, then the WebSocket frame as members get it.
const (
	busEnvelope = 18
	busMessage  = 'm'
	busJoin     = 'j'
	// busLocal: already delivered to the origin's local members (sent
	// while the stream did not answer).
	busLocal = 1
)

// natsBus is the server's link to NATS: one connection, one publisher
// goroutine fed by the loops through a bounded queue, and one ordered
// consumer per channel with local members.
type natsBus struct {
	s      *Server
	nc     *nats.Conn
	js     jetstream.JetStream
	stream string
	prefix string
	origin uint64 // random per process: a restarted server is another origin

	q     chan busOut
	retry chan *nats.Msg // publishes that failed, to be sent again

	conns sync.Map // conn id -> *busConn: members whose messages go through the stream
	subs  sync.Map // *natsSub -> nil: the channel links that run
	fl    busFlight
	// backlog is what localFirst took from q, to publish before q
	// (publisher goroutine only).
	backlog []busOut
	epoch   uint64 // nats.go's reconnect count at the publisher's last look
	// settling: a reconnect found publishes in flight; recover waits for
	// them before anything else goes out (publisher goroutine only).
	settling bool

	connected atomic.Bool // the NATS connection is up
	// answering: local messages go through the stream (it exists and
	// acknowledges); only localFirst clears it, under modeMu.
	answering  atomic.Bool
	modeMu     sync.RWMutex
	poke       chan struct{} // the connection went down: wakes the publisher
	maxPayload atomic.Int64
	ready      chan struct{} // closed once the stream exists
	readyOnce  sync.Once

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	published, acked, failed, received, localOnly, full, tooLarge, gaps atomic.Int64
	consumers                                                           atomic.Int64
}

// busOut is one publish for the publisher goroutine.
type busOut struct {
	ch   *channel
	kind byte
	data []byte
}

// busConn is a member whose messages went to the stream: its own message
// must not reach it when it comes back.
type busConn struct {
	id uint64
	// echoEnd is the ring sequence after the member's last message that
	// came back from the stream (set by the channel's consumer): the
	// group's shared batch is not for it below that (sharesFrom).
	echoEnd atomic.Uint64
}

// busQueue bounds the messages waiting for the publisher goroutine.
const busQueue = 1 << 16

// busHeaders is room for the headers of a message on NATS (its id).
const busHeaders = 128

// newNATSBus connects to opts.NATS (retrying in the background while it is
// unreachable) and makes sure of the stream off the caller's path.
func newNATSBus(s *Server) (*natsBus, error) {
	o := &s.opts
	b := &natsBus{
		s:      s,
		prefix: o.NATSPrefix,
		stream: streamName(o.NATSPrefix),
		q:      make(chan busOut, busQueue),
		retry:  make(chan *nats.Msg, busQueue),
		ready:  make(chan struct{}),
		poke:   make(chan struct{}, 1),
	}
	b.fl.pending = make(map[uint64]*flightMsg)
	b.fl.local = make(map[uint64]struct{})
	var r [8]byte
	_, _ = rand.Read(r[:])
	b.origin = binary.BigEndian.Uint64(r[:]) | 1
	b.ctx, b.cancel = context.WithCancel(context.Background())
	opts := []nats.Option{
		nats.Name("mles " + o.ServerID),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(-1), // publish waits for the connection (natsBus.publish)
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.ConnectHandler(func(nc *nats.Conn) { b.up(nc) }),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.up(nc)
			b.catchUpAll()
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			b.connected.Store(false)
			select {
			case b.poke <- struct{}{}: // the publisher switches to local delivery first
			default:
			}
			s.log.Warn("nats: disconnected; local members go on, messages wait for the stream", "err", err)
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			s.log.Warn("nats: error", "err", err)
		}),
	}
	opts = append(opts, o.NATSOptions...)
	nc, err := nats.Connect(strings.Join(o.NATS, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("server: NATS (--nats): %w", err)
	}
	b.nc = nc
	b.js, err = jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncTimeout(5*time.Second),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) { b.onFail(m, err) }),
		jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) { b.onAck(m) }),
	)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("server: NATS (--nats): %w", err)
	}
	if nc.IsConnected() {
		b.up(nc)
	}
	b.wg.Add(2)
	go b.ensureStream()
	go b.publisher()
	return b, nil
}

// streamName derives the JetStream stream's name from the prefix.
func streamName(prefix string) string {
	return strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(prefix))
}

// subjects are the channel's subjects: channel names are arbitrary, so
// they are hashed (128 bits of SHA-256, base32).
// The stream republishes what it stores under prefix_live (natssub.go).
func (b *natsBus) subjects(name string) (m, j, live string) {
	h := sha256.Sum256([]byte(name))
	t := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h[:16]))
	return b.prefix + "." + t + ".m", b.prefix + "." + t + ".j", b.prefix + "_live." + t + ".*"
}

func (b *natsBus) up(nc *nats.Conn) {
	b.maxPayload.Store(nc.MaxPayload())
	b.connected.Store(true)
	b.s.log.Info("nats: connected", "server", nc.ConnectedUrlRedacted())
}

// through reports whether local messages go through the stream now.
func (b *natsBus) through() bool {
	return b.answering.Load()
}

// sendThrough queues a member's message for the stream if local messages
// go through it now, and reports whether it did. The mode cannot change
// between the look and the queueing (natsBus.localFirst).
func (b *natsBus) sendThrough(c *conn, frame []byte) bool {
	b.modeMu.RLock()
	defer b.modeMu.RUnlock()
	return b.answering.Load() && b.send(c, busMessage, 0, frame)
}

// ensureStream creates or updates the stream until it exists.
func (b *natsBus) ensureStream() {
	defer b.wg.Done()
	o := &b.s.opts
	cfg := jetstream.StreamConfig{
		Name:              b.stream,
		Description:       "mles channels (history and order)",
		Subjects:          []string{b.prefix + ".>"},
		Storage:           jetstream.FileStorage,
		Replicas:          o.NATSReplicas,
		MaxMsgsPerSubject: int64(o.History),
		Discard:           jetstream.DiscardOld,
		Duplicates:        2 * time.Minute,
		RePublish:         &jetstream.RePublish{Source: b.prefix + ".>", Destination: b.prefix + "_live.>"},
	}
	wait := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		err := b.makeStream(ctx, cfg)
		cancel()
		if err == nil {
			b.answering.Store(true)
			b.readyOnce.Do(func() { close(b.ready) })
			b.s.log.Info("nats: stream ready", "stream", b.stream, "replicas", cfg.Replicas, "limit", cfg.MaxMsgsPerSubject)
			return
		}
		if b.ctx.Err() != nil {
			return
		}
		b.s.log.Warn("nats: stream not ready; retrying", "stream", b.stream, "err", err)
		if !sleepCtx(b.ctx, wait) {
			return
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// makeStream looks the stream up, updates it where its configuration
// differs (another server with another --limit, say: the last one started
// sets it), and creates it if it is not there. Servers that start together
// race to create it; the losers find it.
func (b *natsBus) makeStream(ctx context.Context, cfg jetstream.StreamConfig) error {
	for {
		st, err := b.js.Stream(ctx, cfg.Name)
		switch {
		case err == nil:
			have := st.CachedInfo().Config
			if have.MaxMsgsPerSubject == cfg.MaxMsgsPerSubject && have.Replicas == cfg.Replicas &&
				have.RePublish != nil && *have.RePublish == *cfg.RePublish && slices.Equal(have.Subjects, cfg.Subjects) {
				return nil
			}
			b.s.log.Warn("nats: updating the stream's configuration", "stream", cfg.Name,
				"limit", cfg.MaxMsgsPerSubject, "was", have.MaxMsgsPerSubject, "replicas", cfg.Replicas, "were", have.Replicas)
			_, err = b.js.UpdateStream(ctx, cfg)
			return err
		case !errors.Is(err, jetstream.ErrStreamNotFound):
			return err
		}
		_, err = b.js.CreateStream(ctx, cfg)
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// send queues a message or join frame of c's for the stream; it never
// waits. It reports false when the queue is full or the frame too large
// for NATS (then the message is for local members only).
func (b *natsBus) send(c *conn, kind, flags byte, frame []byte) bool {
	if mp := b.maxPayload.Load(); mp > 0 && int64(busEnvelope+len(frame)+busHeaders) > mp {
		b.tooLarge.Add(1)
		return false
	}
	data := make([]byte, busEnvelope+len(frame))
	data[0], data[1] = kind, flags
	binary.BigEndian.PutUint64(data[2:], b.origin)
	binary.BigEndian.PutUint64(data[10:], c.id)
	copy(data[busEnvelope:], frame)
	if kind == busMessage && flags&busLocal == 0 {
		// Known before the message can come back.
		r := c.rareExt()
		if r.bus == nil {
			r.bus = &busConn{id: c.id}
			b.conns.Store(c.id, r.bus)
		}
	}
	select {
	case b.q <- busOut{ch: c.ch, kind: kind, data: data}:
		return true
	default:
		b.full.Add(1)
		return false
	}
}

// forget drops a member that leaves.
func (b *natsBus) forget(c *conn) {
	if c.rare != nil && c.rare.bus != nil {
		b.conns.Delete(c.id)
	}
}

// deliver puts a message from the stream into the channel's ring. Call
// with the channel's chanNATS.mu held, in the stream's order.
func (b *natsBus) deliver(ch *channel, data []byte, msgID string) {
	if x := ch.nats.Load(); x != nil {
		if x.sinceRoom++; x.sinceRoom >= ch.ring.Size()/4 {
			x.sinceRoom = 0
			ch.room(time.Now().Add(roomWait))
		}
	}
	if len(data) < busEnvelope+2 {
		return
	}
	kind, flags := data[0], data[1]
	origin := binary.BigEndian.Uint64(data[2:])
	from := uint64FromEnvelope(data)
	frame := data[busEnvelope:]
	own := origin == b.origin
	switch kind {
	case busJoin:
		if !own { // an own join frame is in the ring since the join
			ch.ring.PublishJoin(&ring.Message{Frame: frame})
		}
	case busMessage:
		if own && (b.back(idNum(msgID)) || flags&busLocal != 0) {
			return // delivered here when it was sent
		}
		if !own {
			ch.publish(&ring.Message{Frame: frame}, nil)
		} else {
			b.publishOwn(ch, from, frame)
		}
		b.received.Add(1)
	}
}

// publishOwn puts a message of the local member from into the channel's
// ring, off the loops: the member skips it (conn.drain by From, and no
// shared batch holds it for the member: busConn.echoEnd).
func (b *natsBus) publishOwn(ch *channel, from uint64, frame []byte) {
	var bc *busConn
	if v, ok := b.conns.Load(from); ok {
		bc = v.(*busConn)
		bc.echoEnd.Store(math.MaxUint64) // its sequence is not known yet
	}
	seq := ch.publish(&ring.Message{Frame: frame, From: from}, nil)
	if bc != nil {
		bc.echoEnd.Store(seq + 1)
	}
}

// uint64FromEnvelope is the connection id in an envelope.
func uint64FromEnvelope(data []byte) uint64 { return binary.BigEndian.Uint64(data[10:]) }

// room waits, off the loops, until every loop with members of the channel
// has begun the drain posted to it last, or until deadline: a burst from
// the stream (a catch-up, or NATS faster than the loops) comes no faster
// than the loops take it, so it does not lap the members that keep up.
// The wait is NATS's to absorb (its pending limits, then a gap that a
// catch-up reads from the stream).
func (ch *channel) room(deadline time.Time) {
	for i := range ch.groups {
		g := ch.groups[i].Load()
		for g != nil && g.n.Load() > 0 && g.dirty.Load() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Microsecond)
		}
	}
}

// roomWait bounds one wait of room (a loop held up elsewhere).
const roomWait = time.Second

// close stops the consumers' and publisher's goroutines and flushes what
// nats.go holds, within the context's time.
func (b *natsBus) close(ctx context.Context) {
	for len(b.q) > 0 && sleepCtx(ctx, 5*time.Millisecond) {
	}
	select {
	case <-b.js.PublishAsyncComplete():
	case <-ctx.Done():
	}
	b.cancel()
	b.wg.Wait()
	_ = b.nc.FlushWithContext(ctx)
	b.nc.Close()
}

// NATSStats are the cluster link's figures (Metrics.NATS).
type NATSStats struct {
	Connected bool // the NATS connection is up
	Through   bool // local messages go through the stream (connected, and it acknowledges)
	Queued    int  // messages waiting for the publisher goroutine
	Consumers int64
	Published int64 // handed to NATS (sent again after a failure included)
	Acked     int64 // acknowledged by JetStream
	Failed    int64 // not acknowledged (sent again)
	Received  int64 // taken from the stream into a channel
	LocalOnly int64 // delivered to local members before the stream had them (NATS down)
	QueueFull int64 // not queued: the queue was full (delivered locally only)
	TooLarge  int64 // over NATS's max_payload (delivered locally only)
	Gaps      int64 // live messages missed (NATS dropped them, or the link was down), read from the stream
}

// natsStats returns the bus's figures, nil without --nats.
func (s *Server) natsStats() *NATSStats {
	b := s.bus
	if b == nil {
		return nil
	}
	return &NATSStats{
		Connected: b.connected.Load(), Through: b.through(), Queued: len(b.q),
		Consumers: b.consumers.Load(), Published: b.published.Load(), Acked: b.acked.Load(),
		Failed: b.failed.Load(), Received: b.received.Load(), LocalOnly: b.localOnly.Load(),
		QueueFull: b.full.Load(), TooLarge: b.tooLarge.Load(), Gaps: b.gaps.Load(),
	}
}
