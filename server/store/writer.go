package store

import (
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// The writer is one goroutine (run) that owns the engine's writes. It blocks on the queue;
// woken by an op, it takes everything queued up to the batch bounds, writes it as one engine
// batch (one write to the log), trims each touched channel past the caps in the same batch,
// and fsyncs per the policy. Under load the batches grow, so fsyncs stay one per batch (group
// commit) however many records arrive meanwhile.

// writer is the state of the writer goroutine; nothing else touches it.
type writer struct {
	s     *Store
	b     *pebble.Batch
	ops   []op
	key   []byte
	val   []byte
	dels  []entry
	dirty bool        // written since the last fsync
	timer *time.Timer // SyncInterval: armed by the first write after an fsync
	disk  time.Time   // when diskBytes was last refreshed
}

// run is the writer goroutine.
func (s *Store) run() {
	defer close(s.done)
	w := &writer{s: s, b: s.db.NewBatch(), ops: make([]op, 0, 64)}
	var tick <-chan time.Time
	if s.o.Sync.Mode == SyncInterval {
		w.timer = time.NewTimer(s.o.Sync.Interval)
		w.timer.Stop()
		defer w.timer.Stop()
		tick = w.timer.C
	}
	for {
		select {
		case first := <-s.queue:
			ops := w.gather(first)
			w.apply(ops)
			last := ops[len(ops)-1]
			clear(ops) // let the payloads go
			if last.kind == opFlush || last.kind == opClose {
				last.done <- w.sync()
				if last.kind == opClose {
					return
				}
			}
			if len(s.queue) == 0 {
				s.behind.Store(false)
			}
		case <-tick:
			w.sync()
		}
	}
}

// gather takes first and whatever else is queued, up to the batch bounds. A flush or close
// marker ends the batch.
func (w *writer) gather(first op) []op {
	ops := append(w.ops[:0], first)
	size := len(first.rec.Payload)
loop:
	for first.kind < opFlush && len(ops) < maxBatchRecords && size < maxBatchBytes {
		select {
		case o := <-w.s.queue:
			ops = append(ops, o)
			size += len(o.rec.Payload)
			if o.kind >= opFlush {
				break loop
			}
		default:
			break loop
		}
	}
	w.ops = ops
	return ops
}

// apply writes ops as one batch. A failure or a panic in the engine fails the store: the
// writer then drops what comes and answers markers with the error, and the server keeps
// running on its in-memory history.
func (w *writer) apply(ops []op) {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		for i := range ops {
			if ops[i].kind == opAppend {
				s.dropped.Add(1)
			}
		}
		return
	}
	defer func() {
		if p := recover(); p != nil {
			w.fail(fmt.Errorf("store: the engine failed writing: %v", p))
		}
	}()
	start := time.Now()
	b := w.b
	b.Reset()
	n := 0
	for i := range ops {
		o := &ops[i]
		switch o.kind {
		case opAppend:
			w.append(o)
			n++
		case opDrop:
			w.key = appendPrefix(w.key[:0], o.channel)
			b.DeleteRange(w.key, prefixEnd(w.key), nil)
			delete(s.index, o.channel)
		}
	}
	if b.Empty() {
		return
	}
	opt := pebble.NoSync
	if s.o.Sync.Mode == SyncAlways {
		opt = pebble.Sync
	}
	if err := s.db.Apply(b, opt); err != nil {
		w.fail(fmt.Errorf("store: write: %w", err))
		return
	}
	if opt == pebble.Sync {
		s.syncs.Add(1)
	} else if !w.dirty {
		w.dirty = true
		if w.timer != nil {
			w.timer.Reset(s.o.Sync.Interval)
		}
	}
	s.written.Add(uint64(n))
	s.batches.Add(1)
	s.lastBatch.Store(int64(time.Since(start)))
	s.channels.Store(int64(len(s.index)))
	if time.Since(w.disk) >= time.Second {
		w.disk = time.Now()
		s.diskBytes.Store(int64(s.db.Metrics().DiskSpaceUsage()))
	}
}

// append adds one record to the batch and the channel's index, and deletes what it pushes
// past the caps. Called with mu held.
func (w *writer) append(o *op) {
	s := w.s
	idx := s.index[o.channel]
	if idx == nil {
		idx = new(channelIndex)
		s.index[o.channel] = idx
	}
	e := entry{order: o.rec.Order, arrival: s.arrival, size: uint32(len(o.rec.Payload))}
	s.arrival++
	w.key = appendKey(w.key[:0], o.channel, e.order, e.arrival)
	w.val = appendValue(w.val[:0], &o.rec)
	w.b.Set(w.key, w.val, nil) // copies both
	idx.add(e, o.rec.Join)
	w.dels = idx.trim(s.o.Limit, s.o.MaxBytes, w.dels[:0])
	for _, d := range w.dels {
		w.key = appendKey(w.key[:0], o.channel, d.order, d.arrival)
		w.b.Delete(w.key, nil)
	}
}

// sync makes what was written durable, if anything was since the last fsync.
func (w *writer) sync() (err error) {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if !w.dirty {
		return nil
	}
	defer func() {
		if p := recover(); p != nil {
			w.fail(fmt.Errorf("store: the engine failed syncing: %v", p))
			err = s.err
		}
	}()
	// An empty log record written with Sync fsyncs the log, and so every write before it.
	if err := s.db.LogData(nil, pebble.Sync); err != nil {
		w.fail(fmt.Errorf("store: sync: %w", err))
		return s.err
	}
	w.dirty = false
	s.syncs.Add(1)
	return nil
}

// fail records the writer's first failure: the store stops writing. Called with mu held.
func (w *writer) fail(err error) {
	s := w.s
	if s.err == nil {
		s.err = err
		s.state.Or(stateFailed)
		s.log.Error("store: history is no longer written", "err", err)
	}
}
