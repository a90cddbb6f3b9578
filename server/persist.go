package server

// Persistent history (SPEC 1.4, --history-dir): every message and stored
// join frame a channel accepts is queued to the store (server/store) from
// the loop, without I/O; the store's writer batches it to disk. On start,
// before the server listens, the store's channels are replayed into their
// rings, so a restart keeps the history, the message ids (peering) and the
// channels' one order.

import (
	"fmt"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/codec"
	"github.com/mles/mles/ring"
	"github.com/mles/mles/server/store"
)

// openStore opens the history store and loads it into the registry.
func (s *Server) openStore() error {
	o := s.opts
	if o.HistoryDir == "" {
		return nil
	}
	policy, err := store.ParseSync(o.HistorySync)
	if err != nil {
		return err
	}
	st, err := store.Open(store.Options{
		Dir:      o.HistoryDir,
		Limit:    o.History,
		MaxBytes: o.HistoryBytes,
		Sync:     policy,
		Logger:   s.log,
	})
	if err != nil {
		return err
	}
	start := time.Now()
	var channels, messages int
	err = st.LoadAll(func(name string, recs []store.Record) {
		s.restore(name, recs)
		channels++
		messages += len(recs)
	})
	if err != nil {
		_ = st.Close()
		return fmt.Errorf("loading the history in %s: %w", o.HistoryDir, err)
	}
	s.store = st
	s.log.Info("history loaded", "dir", o.HistoryDir, "channels", channels, "records", messages, "took", time.Since(start).Round(time.Millisecond), "sync", policy.String())
	return nil
}

// restore replays a stored channel into its ring, in the stored order,
// and sets the channel's order base so that what it accepts from now on
// is stored after it.
func (s *Server) restore(name string, recs []store.Record) {
	ch := s.reg.channelFor(s, name)
	p := ch.peering()
	var last uint64
	for i := range recs {
		r := &recs[i]
		frame := codec.AppendFrame(make([]byte, 0, codec.FrameHeaderLen(len(r.Payload))+len(r.Payload)), ws.OpCode(r.Op), r.Payload)
		m := &ring.Message{Frame: frame, ID: &ring.ID{Origin: r.Origin, Seq: r.Seq}}
		if r.Join {
			m.ID = nil
			ch.ring.PublishJoin(m)
		} else {
			ch.ring.Publish(m)
			if r.Seq > p.seen[r.Origin] {
				p.seen[r.Origin] = r.Seq
			}
		}
		last = max(last, r.Order)
	}
	// Orders are 2(base+seq)+1 for a message at ring sequence seq and
	// 2(base+pos) for a join before message pos: the next message, at
	// the head, must be stored above last. (Unsigned arithmetic wraps, so
	// a base "below zero" works as well.)
	ch.orderBase = last/2 + 1 - ch.ring.Head()
	// The idle clock starts at the load: a restart does not tell how long
	// the channel had been quiet before.
	ch.lastActive.Store(time.Now().UnixNano())
}

// persist queues a message the channel accepted at ring sequence seq,
// with its id (idOf).
func (s *Server) persist(ch *channel, m *ring.Message, seq uint64) {
	if s.store == nil {
		return
	}
	id := ch.idOf(m, seq)
	op, payload := splitFrame(m.Frame)
	s.store.Append(ch.name, store.Record{
		Order:   2*(ch.orderBase+seq) + 1,
		Origin:  id.Origin,
		Seq:     id.Seq,
		Op:      byte(op),
		Payload: payload,
	})
}

// persistJoin queues a stored join frame, placed before message pos.
func (s *Server) persistJoin(ch *channel, m *ring.Message, pos uint64) {
	if s.store == nil {
		return
	}
	op, payload := splitFrame(m.Frame)
	s.store.Append(ch.name, store.Record{
		Order:   2 * (ch.orderBase + pos),
		Op:      byte(op),
		Join:    true,
		Payload: payload,
	})
}
