package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// The defaults of Options.
const (
	// DefaultLimit is the per-channel record limit when Options.Limit is 0 (SPEC 4, -l).
	DefaultLimit = 200
	// DefaultQueue is the queue length when Options.Queue is 0: a second of 65k messages.
	DefaultQueue = 1 << 16
	// DefaultLockWait is how long Open waits for another holder of the directory's lock.
	DefaultLockWait = 10 * time.Second
)

// The writer's batch bounds: one batch is at most this many records or payload bytes (a
// record larger than maxBatchBytes makes a batch of its own).
const (
	maxBatchRecords = 4096
	maxBatchBytes   = 4 << 20
)

// warnEvery spaces the "writer is behind" log lines.
const warnEvery = 10 * time.Second

// Options configures a Store.
type Options struct {
	// Dir is the history directory (--history-dir), created if missing.
	Dir string
	// Limit is how many data records each channel keeps (the newest); its stored join
	// frames are kept up to Limit too, counted apart. Default DefaultLimit.
	Limit int
	// MaxBytes caps the payload bytes of a channel's data and joins together, dropping
	// the oldest of either first. 0 means unlimited.
	MaxBytes int64
	// Sync says when the log is fsynced. The zero value means DefaultSync.
	Sync SyncPolicy
	// Queue is the most records (and Drops) waiting for the writer; Append drops past it.
	// Default DefaultQueue. A queued op takes about 90 bytes plus its payload.
	Queue int
	// Logger receives the store's log lines, which never show channel names or payloads
	// above Debug (Pebble's details, at Debug, may quote keys). Default: none.
	Logger *slog.Logger
	// LockWait is how long Open waits while another Store holds Dir. Default
	// DefaultLockWait.
	LockWait time.Duration
}

// setDefaults fills the zero fields.
func (o *Options) setDefaults() {
	if o.Limit == 0 {
		o.Limit = DefaultLimit
	}
	if o.Sync == (SyncPolicy{}) {
		o.Sync, _ = ParseSync(DefaultSync)
	}
	if o.Queue == 0 {
		o.Queue = DefaultQueue
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.LockWait == 0 {
		o.LockWait = DefaultLockWait
	}
}

// check validates the options after setDefaults.
func (o *Options) check() error {
	switch {
	case o.Dir == "":
		return errors.New("store: no history directory")
	case o.Limit < 0:
		return fmt.Errorf("store: history limit %d: want 1 or more", o.Limit)
	case o.MaxBytes < 0:
		return fmt.Errorf("store: history byte cap %d: want 0 (unlimited) or more", o.MaxBytes)
	case o.Queue < 0:
		return fmt.Errorf("store: queue length %d: want 1 or more", o.Queue)
	case o.LockWait < 0:
		return fmt.Errorf("store: lock wait %v: want 0 (default) or more", o.LockWait)
	}
	return o.Sync.check()
}

// Store keeps the history of every channel in Options.Dir. Append, Drop, Flush and Stats are
// safe from any goroutine; LoadAll and Close too, though the server calls each once.
type Store struct {
	o     Options
	log   *slog.Logger
	db    *pebble.DB
	fs    *syncFS // the engine's file system: its log fsyncs
	lock  *os.File
	ev    engineEvents
	queue chan op
	state atomic.Uint32 // stateClosed, stateFailed bits; 0 while open
	done  chan struct{} // closed when the writer exits

	closeOnce sync.Once
	closeErr  error

	appended, written, dropped atomic.Uint64
	batches, skipped, lost     atomic.Uint64
	behind                     atomic.Bool
	channels                   atomic.Int64
	diskBytes                  atomic.Int64
	lastBatch                  atomic.Int64 // nanoseconds
	lastWarn                   atomic.Int64 // unix nanoseconds of the last "behind" line

	// mu is held by the writer while it applies a batch and by LoadAll while it reads, so
	// that LoadAll sees whole batches; the fields below it belong to whoever holds it.
	mu      sync.Mutex
	index   map[string]*channelIndex
	arrival uint64 // the next record's arrival counter
	err     error  // why the writer stopped writing (stateFailed)
}

const (
	stateClosed = 1 << iota
	stateFailed
)

// opKind says what a queued op asks the writer to do.
type opKind uint8

const (
	opAppend opKind = iota
	opDrop
	opFlush // write what came before, fsync, answer on done
	opClose // as opFlush, then stop
)

// op is one entry of the queue, sent by value: queueing allocates nothing.
type op struct {
	channel string
	rec     Record
	kind    opKind
	done    chan error
}

// Open opens the history in o.Dir, creating it if needed, rebuilds the per-channel counts,
// drops what lies past the current limits, and starts the writer. A damaged directory gives
// a *CorruptError, one held by another Store a *LockedError after o.LockWait.
func Open(o Options) (*Store, error) {
	o.setDefaults()
	if err := o.check(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: cannot use history directory: %w", err)
	}
	lock, err := lockDir(o.Dir, o.LockWait)
	if err != nil {
		var locked *LockedError
		if errors.As(err, &locked) {
			return nil, err
		}
		return nil, fmt.Errorf("store: cannot use history in %s: %w", o.Dir, err)
	}
	s := &Store{
		o:     o,
		log:   o.Logger,
		lock:  lock,
		queue: make(chan op, o.Queue),
		done:  make(chan struct{}),
		index: make(map[string]*channelIndex),
	}
	s.db, s.fs, err = openEngine(o.Dir, s.log, &s.ev)
	if err == nil {
		err = s.rebuild()
		if err != nil {
			s.closeEngine()
		}
	}
	if err == nil {
		s.checkDurable()
	}
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		return nil, err
	}
	go s.run()
	return s, nil
}

// Append queues r for channel and reports whether it was queued. It never blocks and does no
// I/O: it runs on the event loops. It returns false, and counts the record in Stats.Dropped,
// when the queue is full (a line in the log says so, at most every 10 s), when the store is
// closed or failed, or when r.Op is neither OpText nor OpBinary.
func (s *Store) Append(channel string, r Record) bool {
	if s.state.Load() == 0 && (r.Op == OpText || r.Op == OpBinary) {
		select {
		case s.queue <- op{channel: channel, rec: r}:
			s.appended.Add(1)
			return true
		default:
		}
	}
	s.drop()
	return false
}

// drop counts a record Append could not queue.
func (s *Store) drop() {
	n := s.dropped.Add(1)
	s.behind.Store(true)
	now := time.Now().UnixNano()
	last := s.lastWarn.Load()
	if now-last >= int64(warnEvery) && s.lastWarn.CompareAndSwap(last, now) {
		s.log.Warn("store: history writer is behind, records dropped",
			"dropped", n, "queue", cap(s.queue), "state", s.state.Load())
	}
}

// Drop queues the deletion of channel's whole history (the server's idle sweep), in order
// with the appends before and after it. It returns false when the queue is full or the store
// is closed; the caller may try again later.
func (s *Store) Drop(channel string) bool {
	if s.state.Load() != 0 {
		return false
	}
	select {
	case s.queue <- op{channel: channel, kind: opDrop}:
		return true
	default:
		return false
	}
}

// Flush waits until everything appended before the call is written and fsynced, whatever
// the sync policy (the server calls it on SIGTERM), or ctx ends.
func (s *Store) Flush(ctx context.Context) error {
	return s.mark(ctx, opFlush)
}

// mark queues a flush or close marker and waits for the writer to answer it.
func (s *Store) mark(ctx context.Context, kind opKind) error {
	if kind == opFlush && s.state.Load()&stateClosed != 0 {
		return ErrClosed
	}
	done := make(chan error, 1)
	select {
	case s.queue <- op{kind: kind, done: done}:
	case <-s.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-s.done:
		// The writer answers a close marker just before it exits: both may be ready.
		select {
		case err := <-done:
			return err
		default:
			return ErrClosed
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close flushes what was appended, stops the writer and closes the directory. Appends after
// Close are dropped. It is idempotent: later calls return the first one's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.state.Or(stateClosed)
		err := s.mark(context.Background(), opClose)
		<-s.done
		s.closeErr = errors.Join(err, s.closeEngine())
		if s.lock != nil {
			s.lock.Close() // releases the flock
		}
	})
	return s.closeErr
}

// closeEngine closes Pebble, unless the writer failed inside it (Pebble may then hold its own
// locks, and closing could hang), then stops the fsync goroutine once it has done what Pebble
// asked for while closing.
func (s *Store) closeEngine() error {
	var err error
	if s.state.Load()&stateFailed == 0 {
		if err = s.db.Close(); err != nil {
			err = fmt.Errorf("store: close: %w", err)
		}
	}
	if ferr := s.fs.shutdown(); ferr != nil && err == nil && s.state.Load()&stateFailed == 0 {
		err = fmt.Errorf("store: close: %w", ferr)
	}
	return err
}

// Stats is a snapshot of the store's counters.
type Stats struct {
	// Queued is how many ops wait for the writer now.
	Queued int
	// Appended counts records queued by Append; Written those the writer wrote; Dropped
	// those Append could not queue.
	Appended, Written, Dropped uint64
	// Batches counts the writer's batches; Syncs the fsyncs of the engine's log.
	Batches, Syncs uint64
	// Skipped counts stored records that did not decode and were removed at Open.
	Skipped uint64
	// Lost counts records that were known to be on disk before Open but that the engine no
	// longer held: its log was damaged (durable.go). It counts appends, so records trimmed
	// or dropped since may be among them. A kill -9 does not set it, nor a power loss on a
	// disk that keeps what it fsynced.
	Lost uint64
	// Behind is true from a dropped record until the writer next empties the queue.
	Behind bool
	// Channels is how many channels have stored history.
	Channels int
	// DiskBytes is the size of the history on disk, refreshed at most every second.
	DiskBytes int64
	// LastBatch is how long the last batch took to write to the OS (fsyncs run beside it).
	LastBatch time.Duration
}

// Stats returns the current counters. Safe from any goroutine.
func (s *Store) Stats() Stats {
	return Stats{
		Queued:    len(s.queue),
		Appended:  s.appended.Load(),
		Written:   s.written.Load(),
		Dropped:   s.dropped.Load(),
		Batches:   s.batches.Load(),
		Syncs:     s.fs.syncs.Load(),
		Skipped:   s.skipped.Load(),
		Lost:      s.lost.Load(),
		Behind:    s.behind.Load(),
		Channels:  int(s.channels.Load()),
		DiskBytes: s.diskBytes.Load(),
		LastBatch: time.Duration(s.lastBatch.Load()),
	}
}
