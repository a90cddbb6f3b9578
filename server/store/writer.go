package store

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// The writer is one goroutine (run) that owns the engine's writes. It blocks on the queue;
// woken by an op, it takes everything queued up to the batch bounds, writes it as one engine
// batch, trims each touched channel past the caps in the same batch, and asks for fsyncs per
// the policy. A batch is committed with Sync, so it is in the OS, where a kill -9 cannot take
// it, when the commit returns; the fsyncs run on the engine file system's goroutine
// (syncfs.go) while the writer goes on writing. With SyncAlways the writer asks for an fsync
// after every batch: one fsync covers every batch written before it starts (group commit), so
// under load the fsyncs run back to back, each taking what was written during the one before.

// writer is the state of the writer goroutine; nothing else touches it.
type writer struct {
	s     *Store
	b     *pebble.Batch
	ops   []op
	key   []byte
	val   []byte
	dels  []entry
	meta  []byte
	dirty bool        // written since the last fsync asked for
	timer *time.Timer // SyncInterval: armed by the first write after an fsync request
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
			switch last.kind {
			case opFlush:
				w.sync(last.done, false) // answered once the fsync is done
			case opClose:
				done := make(chan error, 1)
				w.sync(done, true)
				last.done <- <-done
				return
			}
			if len(s.queue) == 0 {
				s.behind.Store(false)
			}
		case <-tick:
			w.sync(nil, false)
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
			w.fail(fmt.Errorf("store: the engine failed writing: %v", panicText(p)))
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
	if n > 0 {
		w.meta = binary.BigEndian.AppendUint64(w.meta[:0], s.arrival)
		b.Set(metaKey, w.meta, nil)
	}
	// Sync makes Pebble write the batch to the OS now (else it waits in Pebble's memory
	// until 32 KiB of the log fill); syncFS turns the fsync it asks for into a note.
	if err := s.db.Apply(b, pebble.Sync); err != nil {
		w.fail(fmt.Errorf("store: write: %w", err))
		return
	}
	if s.o.Sync.Mode == SyncAlways {
		s.fs.fsync(syncWait{arrival: s.arrival}, true)
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

// sync asks for an fsync of everything written so far, if anything was since the last
// request, and has done (if not nil) answered once it and those before are done: nil, or why
// the store failed. final (Close) has mles.durable written before the answer.
func (w *writer) sync(done chan error, final bool) {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		if err := s.fs.failed(); err != nil {
			w.fail(err)
		}
	}
	if s.err != nil {
		if done != nil {
			done <- s.err
		}
		return
	}
	if w.dirty || done != nil {
		s.fs.fsync(syncWait{arrival: s.arrival, done: done, final: final}, w.dirty)
		w.dirty = false
	}
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
