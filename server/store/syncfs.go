package store

import (
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Why the engine gets a file system of its own. Pebble writes its log (the write-ahead log,
// *.log) from one goroutine, which:
//
//   - writes a batch committed without Sync only when a 32 KiB block of the log fills or a
//     later commit asks for a sync: until then it is in Pebble's memory (at 500 records a
//     second that is up to half a second of records);
//   - fsyncs the log when a commit asks for a sync, and writes nothing meanwhile;
//   - and the commit that switches to a new log (every memtable: 4 MiB of records, and after
//     256 KiB, 512 KiB, 1 MiB and 2 MiB just after Open) fsyncs the old one inside the commit.
//
// Whatever waits in Pebble's memory or, while the writer is held up, in its queue, a kill -9
// loses. Calling Pebble's sync from a goroutine of our own does not help: with an fsync of
// 600 ms, TestKill lost 870 ms of records either way.
//
// So the writer commits every batch with Sync, which makes Pebble write it to the OS before
// the commit returns, and syncFS, vfs.Default except for the log files, turns the fsync
// Pebble then asks of the log file into a note that the file has data to fsync (walFile.Sync).
// The fsyncs are the store's to ask for, per its policy (fsync), and run on syncFS's goroutine
// (loop) while Pebble goes on writing batches to the OS. A request takes a ticket; a round of
// the loop takes the tickets issued so far, fsyncs every log file noted since the last round,
// and marks them done. So once the ticket of a request made after a commit returned is done,
// that commit is on disk. Each request carries the arrival counter it covers (durable.go) and
// may carry a channel to answer (Flush, Close).
//
// A log Pebble opens to replay at Open is fsynced before it is read (Open), so what the store
// loads is on disk even after a kill -9.
//
// What Pebble then takes for synced is only written. Nothing in Pebble acts on it but the
// commits that asked (the store's own) and the close of an old log at a switch: the loop
// fsyncs a closed log before it closes it for real, so its records are covered by every
// later ticket. Pebble deletes or reuses an old log only once its memtable is in a table,
// which it syncs itself (tables, MANIFEST and directories keep Pebble's own synchronous
// syncs). Two Pebble features would trust the log's syncs and are not used: WAL failover, and
// the synced offsets written into the log from FormatWALSyncChunks on, which recovery trusts
// to tell damage from a torn end (the store creates its directories at Pebble's lowest format,
// and Pebble never raises it by itself).

// walCategory is the write category Pebble creates its log files with.
const walCategory vfs.DiskWriteCategory = "pebble-wal"

// syncHook, when set (tests only), is called for each round with the round's fsyncs: a test
// can slow them down like a slow disk, or note when they run.
var syncHook atomic.Pointer[func(fsync func() error) error]

// syncFS is the engine's file system; see above.
type syncFS struct {
	vfs.FS
	log    *slog.Logger
	wake   chan struct{} // one pending signal for the loop
	exited chan struct{} // closed when the loop returns
	syncs  atomic.Uint64 // rounds that fsynced (Stats.Syncs)

	mu      sync.Mutex
	files   []*walFile // written since their last fsync
	closing []*walFile // closed by Pebble: fsynced and closed by the next round
	waits   []syncWait
	issued  uint64 // tickets handed out
	done    uint64 // tickets whose fsyncs finished
	err     error  // the first fsync or close that failed: every later wait gets it
	stop    bool   // shutdown: return once nothing is pending
	side    sidecar
}

// syncWait is a request's ticket: once it is done, arrival is durable, and done (if not nil)
// is answered, after mles.durable is written when final (Close) asks for it.
type syncWait struct {
	ticket, arrival uint64
	done            chan error
	final           bool
}

// walFile is a log file of Pebble's: writes go straight to the OS, fsyncs to the loop.
type walFile struct {
	vfs.File
	fs    *syncFS
	dirty bool // in fs.files; under fs.mu
}

// newSyncFS starts the loop of a file system over vfs.Default; shutdown stops it.
func newSyncFS(dir string, log *slog.Logger) *syncFS {
	fs := &syncFS{
		FS:     vfs.Default,
		log:    log,
		wake:   make(chan struct{}, 1),
		exited: make(chan struct{}),
		side:   sidecar{dir: dir, log: log},
	}
	go fs.loop()
	return fs
}

func (fs *syncFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	return fs.wrap(f, category, err)
}

func (fs *syncFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	return fs.wrap(f, category, err)
}

// Open opens a file. A log file, which Pebble opens only to replay it at Open, is fsynced
// first: what a killed process wrote is in the OS but maybe not yet on disk, and the store
// takes all it loads for durable (durable.go).
func (fs *syncFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.Open(name, opts...)
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	if err := f.SyncData(); err != nil {
		f.Close()
		return nil, err
	}
	fs.syncs.Add(1)
	return f, nil
}

func (fs *syncFS) wrap(f vfs.File, category vfs.DiskWriteCategory, err error) (vfs.File, error) {
	if err != nil || category != walCategory {
		return f, err
	}
	return &walFile{File: f, fs: fs}, nil
}

// Sync notes that the file has data for the next fsync round; Pebble has written it to the
// OS. It fails once an fsync has failed.
func (f *walFile) Sync() error {
	fs := f.fs
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if !f.dirty {
		f.dirty = true
		fs.files = append(fs.files, f)
	}
	return fs.err
}

// SyncData is Sync: Pebble's syncs of its log are fdatasyncs already.
func (f *walFile) SyncData() error { return f.Sync() }

// SyncTo is Sync, and promises nothing, as its contract allows.
func (f *walFile) SyncTo(int64) (fullSync bool, err error) { return false, f.Sync() }

// Close hands the file to the loop, which fsyncs and closes it.
func (f *walFile) Close() error {
	fs := f.fs
	fs.mu.Lock()
	fs.closing = append(fs.closing, f)
	fs.mu.Unlock()
	fs.signal()
	return nil
}

func (fs *syncFS) signal() {
	select {
	case fs.wake <- struct{}{}:
	default:
	}
}

// fsync asks for an fsync of everything Pebble has written so far (fresh), or only waits for
// the fsyncs asked for before (to answer a Flush with nothing new written). Once done,
// w.arrival is recorded as durable and w.done, if not nil, gets nil or the first fsync
// failure. w.ticket is set here.
func (fs *syncFS) fsync(w syncWait, fresh bool) {
	fs.mu.Lock()
	if fresh {
		fs.issued++
	}
	w.ticket = fs.issued
	fs.waits = append(fs.waits, w)
	fs.mu.Unlock()
	fs.signal()
}

// syncNow fsyncs everything written so far and waits for it.
func (fs *syncFS) syncNow() error {
	done := make(chan error, 1)
	fs.fsync(syncWait{done: done}, true)
	return <-done
}

// failed returns the first fsync failure, if any.
func (fs *syncFS) failed() error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.err
}

// shutdown stops the loop once everything pending is done (after the engine closed) and
// returns the first failure.
func (fs *syncFS) shutdown() error {
	fs.mu.Lock()
	fs.stop = true
	fs.mu.Unlock()
	fs.signal()
	<-fs.exited
	return fs.failed()
}

// loop is the fsync goroutine.
func (fs *syncFS) loop() {
	defer close(fs.exited)
	timer := time.NewTimer(time.Hour) // the sidecar's next write, when one waits
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-fs.wake:
		case <-timer.C:
		}
		for {
			more, exit := fs.round(timer)
			if exit {
				return
			}
			if !more {
				break
			}
		}
	}
}

// round fsyncs the files noted when tickets wait, fsyncs and closes the files Pebble closed,
// and answers the waits whose tickets are done. more is true when tickets are still to do;
// exit when the loop is done.
func (fs *syncFS) round(timer *time.Timer) (more, exit bool) {
	fs.mu.Lock()
	target := fs.issued
	var files []*walFile
	if target > fs.done {
		files = fs.files
		fs.files = nil
		for _, f := range files {
			f.dirty = false
		}
	}
	closing := fs.closing
	fs.closing = nil
	for _, f := range closing {
		if f.dirty { // a close-only round: fsynced below, and never again
			f.dirty = false
			fs.files = slices.DeleteFunc(fs.files, func(g *walFile) bool { return g == f })
		}
		if !slices.Contains(files, f) {
			files = append(files, f)
		}
	}
	fs.mu.Unlock()
	if len(files) > 0 {
		fsync := func() error {
			var err error
			for _, f := range files {
				err = errors.Join(err, f.File.SyncData())
			}
			return err
		}
		var err error
		if h := syncHook.Load(); h != nil {
			err = (*h)(fsync)
		} else {
			err = fsync()
		}
		for _, f := range closing {
			err = errors.Join(err, f.File.Close())
		}
		fs.syncs.Add(1)
		if err != nil {
			fs.mu.Lock()
			if fs.err == nil {
				fs.err = err
				fs.log.Error("store: fsync of the history log failed; history is no longer written", "err", err)
			}
			fs.mu.Unlock()
		}
	}

	fs.mu.Lock()
	fs.done = max(fs.done, target)
	var ready []syncWait
	keep := fs.waits[:0]
	for _, w := range fs.waits {
		if w.ticket <= fs.done {
			ready = append(ready, w)
		} else {
			keep = append(keep, w)
		}
	}
	clear(fs.waits[len(keep):])
	fs.waits = keep
	err := fs.err
	var record uint64 // a counter to write to the sidecar, if any
	if err == nil {
		record = fs.side.next(ready, timer)
	}
	more = fs.issued > fs.done || len(fs.closing) > 0
	exit = fs.stop && !more && len(fs.waits) == 0
	fs.mu.Unlock()

	if record > 0 {
		fs.side.write(record)
	}
	for _, w := range ready {
		if w.done != nil {
			w.done <- err
		}
	}
	return more, exit
}
