package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// rebuild reads every stored record once at Open: it rebuilds the per-channel index, finds
// the next arrival counter (metaKey, or past the highest stored), and deletes in one synced
// batch the records that do not decode (counted in Stats.Skipped, with a warning) and those
// past the current caps (the limits may have been lowered since the last run). Called before
// the writer starts.
func (s *Store) rebuild() error {
	start := time.Now()
	b := s.db.NewBatch()
	defer b.Close()
	var (
		records int
		skipped uint64
		name    []byte // the channel being read; its index is cur
		cur     *channelIndex
	)
	err := scan(s.db, s.o.Dir, &s.ev, func(key, channel []byte, order, arrival uint64, r *Record, bad bool) {
		if bad {
			skipped++
			b.Delete(key, nil)
			return
		}
		if cur == nil || !bytes.Equal(channel, name) {
			name = append(name[:0], channel...)
			cur = new(channelIndex)
			s.index[string(channel)] = cur
		}
		cur.add(entry{order: order, arrival: arrival, size: uint32(len(r.Payload))}, r.Join)
		s.arrival = max(s.arrival, arrival+1)
		records++
	})
	if err != nil {
		return err
	}
	next, err := readMeta(s.db)
	if err != nil {
		return engineError(s.o.Dir, &s.ev, err)
	}
	s.arrival = max(s.arrival, next)
	trimmed := 0
	var dels []entry
	var key []byte
	for channel, idx := range s.index {
		dels = idx.trim(s.o.Limit, s.o.MaxBytes, dels[:0])
		for _, d := range dels {
			key = appendKey(key[:0], channel, d.order, d.arrival)
			b.Delete(key, nil)
		}
		trimmed += len(dels)
	}
	if !b.Empty() {
		if err := s.db.Apply(b, pebble.Sync); err != nil {
			return engineError(s.o.Dir, &s.ev, err)
		}
		if err := s.fs.syncNow(); err != nil {
			return engineError(s.o.Dir, &s.ev, err)
		}
	}
	if skipped > 0 {
		s.skipped.Store(skipped)
		s.log.Warn("store: stored records that did not decode were removed", "skipped", skipped)
	}
	s.channels.Store(int64(len(s.index)))
	s.diskBytes.Store(int64(s.db.Metrics().DiskSpaceUsage()))
	s.log.Info("store: history opened", "channels", len(s.index), "records", records-trimmed,
		"trimmed", trimmed, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// readMeta returns the arrival counter stored at metaKey, 0 when there is none (or it is not
// 8 bytes: the records then tell).
func readMeta(db *pebble.DB) (uint64, error) {
	v, closer, err := db.Get(metaKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, nil
	}
	return binary.BigEndian.Uint64(v), nil
}

// LoadAll calls fn once per stored channel with its records in (Order, Append) order, oldest
// first, already cut to Limit and MaxBytes. The server calls it once, before it listens. fn
// may keep the records: each payload is its own copy. fn runs while the writer waits, so it
// must not call Flush or Close (Append is fine). A damaged directory gives a *CorruptError.
func (s *Store) LoadAll(fn func(channel string, recs []Record)) error {
	if s.state.Load()&stateClosed != 0 {
		return ErrClosed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var (
		name []byte
		recs []Record
	)
	flush := func() {
		if len(recs) > 0 {
			fn(string(name), recs)
		}
		recs = nil
	}
	err := scan(s.db, s.o.Dir, &s.ev, func(_, channel []byte, _, _ uint64, r *Record, bad bool) {
		if bad {
			return // counted and removed at Open
		}
		if !bytes.Equal(channel, name) {
			flush()
			name = append(name[:0], channel...)
		}
		c := *r
		c.Payload = bytes.Clone(r.Payload)
		if c.Payload == nil {
			c.Payload = []byte{}
		}
		recs = append(recs, c)
	})
	if err != nil {
		return err
	}
	flush()
	return nil
}
