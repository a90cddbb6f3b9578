package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
)

// The engine is Pebble (README.md says why): an LSM tree whose write-ahead log takes each
// batch with one write, which an fsync later makes durable, and whose recovery stops at a torn
// tail of the newest log. This file keeps it behind four calls: open, scan, apply and sync.

// engineEvents remembers what Pebble reported while a call ran, to name the file in errors.
type engineEvents struct {
	mu          sync.Mutex
	corruptFile string
}

func (ev *engineEvents) setCorrupt(path string) {
	ev.mu.Lock()
	ev.corruptFile = path
	ev.mu.Unlock()
}

func (ev *engineEvents) file() string {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return ev.corruptFile
}

// engineLogger routes Pebble's log lines to the store's slog.Logger, whose lines never show
// channel names (Options.Logger). Pebble's info lines name files, levels and counts, but its
// error and fatal lines often carry an error as Pebble formatted it, and those can quote keys:
// a compaction or a table check failing on a key ("background error: ..." with the key), a
// corruption found at a key, an invariant about key order. Our keys start with the channel
// name in clear (record.go), and Pebble's redaction markers do not remove it. So the details of
// those lines go to Debug, where an operator asks for them, and Error gets a fixed line.
// Fatalf panics rather than exiting: Open and LoadAll recover it into a CorruptError, the
// writer into a failed store; panicText keeps its message out of those too.
type engineLogger struct{ log *slog.Logger }

// engineErrorLine is the Error line for any of Pebble's error or fatal lines.
const engineErrorLine = "store: pebble error (details at debug level)"

func (l engineLogger) Infof(format string, args ...any) {
	l.debug("store: pebble: ", format, args)
}

func (l engineLogger) Errorf(format string, args ...any) {
	l.log.Error(engineErrorLine)
	l.debug("store: pebble: ", format, args)
}

func (l engineLogger) Fatalf(format string, args ...any) {
	l.log.Error(engineErrorLine, "fatal", true)
	l.debug("store: pebble: fatal: ", format, args)
	panic(engineFatal{})
}

func (l engineLogger) debug(prefix, format string, args []any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(prefix + fmt.Sprintf(format, args...))
	}
}

// engineFatal is the panic raised by engineLogger.Fatalf; its message went to Debug.
type engineFatal struct{}

// panicText is what errors say of a panic inside Pebble: its value, unless it came from
// Fatalf, whose message may quote a key.
func panicText(p any) any {
	if _, ok := p.(engineFatal); ok {
		return "a fatal error (details at debug level)"
	}
	return p
}

// openEngine opens (or creates) the Pebble database in dir on a syncFS, whose goroutine runs
// until closeEngine.
func openEngine(dir string, log *slog.Logger, ev *engineEvents) (*pebble.DB, *syncFS, error) {
	sfs := newSyncFS(dir, log)
	db, err := openPebble(dir, log, ev, sfs)
	if err != nil {
		sfs.shutdown()
		return nil, nil, err
	}
	return db, sfs, nil
}

// openPebble opens the database on sfs. A panic inside Pebble becomes a CorruptError.
func openPebble(dir string, log *slog.Logger, ev *engineEvents, sfs *syncFS) (db *pebble.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			db, err = nil, &CorruptError{Dir: dir, File: ev.file(), Err: fmt.Errorf("the engine failed opening it: %v", panicText(p))}
		}
	}()
	opts := &pebble.Options{
		// The format stays Pebble's default for a new directory, below FormatWALSyncChunks,
		// which syncFS rules out (syncfs.go).
		FS:     sfs,
		Logger: engineLogger{log},
		EventListener: &pebble.EventListener{
			// Pebble's default is to exit the process; a damaged table instead fails the
			// reads that reach it, and Open and LoadAll report those.
			DataCorruption: func(info pebble.DataCorruptionInfo) {
				ev.setCorrupt(info.Path)
				// The details may quote a key, as Pebble's error lines (engineLogger).
				log.Error("store: damaged history file (details at debug level)", "file", info.Path)
				log.Debug("store: damaged history file", "file", info.Path, "err", info.Details)
			},
		},
	}
	opts.EnsureDefaults()
	if err := checkOptionsFile(dir, opts); err != nil {
		return nil, err
	}
	db, err = pebble.Open(dir, opts)
	if err != nil {
		return nil, engineError(dir, ev, err)
	}
	return db, nil
}

// checkOptionsFile checks the newest OPTIONS file of dir as pebble.Open does, so that a
// damaged one is named in the error: Pebble's own error quotes the bad line, not the file.
func checkOptionsFile(dir string, opts *pebble.Options) error {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil // pebble.Open reports it
	}
	newest, num := "", -1
	for _, e := range es {
		n, ok := strings.CutPrefix(e.Name(), "OPTIONS-")
		if !ok {
			continue
		}
		if i, err := strconv.Atoi(n); err == nil && i > num {
			newest, num = e.Name(), i
		}
	}
	if newest == "" {
		return nil
	}
	path := filepath.Join(dir, newest)
	b, err := os.ReadFile(path)
	if err == nil {
		err = opts.CheckCompatibility(dir, string(b))
	}
	if err != nil {
		return &CorruptError{Dir: dir, File: path, Err: err}
	}
	return nil
}

// engineError turns an engine error during open or load into one for people: the machine's
// own trouble (permissions, a read-only or full disk) as itself, anything else as damage.
func engineError(dir string, ev *engineEvents, err error) error {
	var errno syscall.Errno
	if errors.Is(err, fs.ErrPermission) || (errors.As(err, &errno) &&
		(errno == syscall.EROFS || errno == syscall.ENOSPC || errno == syscall.ENOTDIR || errno == syscall.EIO)) {
		return fmt.Errorf("store: cannot use history in %s: %w", dir, err)
	}
	return &CorruptError{Dir: dir, File: ev.file(), Err: err}
}

// scanFunc receives one stored record: the channel name (valid only during the call), its key
// parts, and the record, whose Payload aliases the engine's buffer (valid only during the
// call). bad is true for a record whose key or value does not decode: key is then the only
// field set.
type scanFunc func(key, channel []byte, order, arrival uint64, r *Record, bad bool)

// scan calls fn for every stored record in key order. A panic inside Pebble becomes a
// CorruptError.
func scan(db *pebble.DB, dir string, ev *engineEvents, fn scanFunc) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &CorruptError{Dir: dir, File: ev.file(), Err: fmt.Errorf("the engine failed reading it: %v", panicText(p))}
		}
	}()
	it, err := db.NewIter(nil)
	if err != nil {
		return engineError(dir, ev, err)
	}
	var r Record
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if bytes.Equal(k, metaKey) {
			continue // rebuild reads it
		}
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return engineError(dir, ev, err)
		}
		channel, order, arrival, okKey := parseKey(k)
		r = Record{Order: order}
		if !okKey || parseValue(v, &r) != nil {
			fn(k, nil, 0, 0, nil, true)
			continue
		}
		fn(k, channel, order, arrival, &r, false)
	}
	if err := it.Close(); err != nil {
		return engineError(dir, ev, err)
	}
	return nil
}
