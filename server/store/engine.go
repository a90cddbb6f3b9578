package store

import (
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

// engineLogger routes Pebble's log lines to the store's slog.Logger. Pebble's own lines name
// files and levels, never payloads. Fatalf panics rather than exiting: Open and LoadAll
// recover it into a CorruptError, the writer into a failed store.
type engineLogger struct{ log *slog.Logger }

func (l engineLogger) Infof(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug("store: pebble: " + fmt.Sprintf(format, args...))
	}
}

func (l engineLogger) Errorf(format string, args ...any) {
	l.log.Error("store: pebble: " + fmt.Sprintf(format, args...))
}

func (l engineLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error("store: pebble: fatal: " + msg)
	panic(engineFatal(msg))
}

// engineFatal is a panic raised by engineLogger.Fatalf.
type engineFatal string

// openEngine opens (or creates) the Pebble database in dir. A panic inside Pebble becomes a
// CorruptError.
func openEngine(dir string, log *slog.Logger, ev *engineEvents) (db *pebble.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			db, err = nil, &CorruptError{Dir: dir, File: ev.file(), Err: fmt.Errorf("the engine failed opening it: %v", p)}
		}
	}()
	opts := &pebble.Options{
		Logger: engineLogger{log},
		EventListener: &pebble.EventListener{
			// Pebble's default is to exit the process; a damaged table instead fails the
			// reads that reach it, and Open and LoadAll report those.
			DataCorruption: func(info pebble.DataCorruptionInfo) {
				ev.setCorrupt(info.Path)
				log.Error("store: damaged history file", "file", info.Path, "err", info.Details)
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
			err = &CorruptError{Dir: dir, File: ev.file(), Err: fmt.Errorf("the engine failed reading it: %v", p)}
		}
	}()
	it, err := db.NewIter(nil)
	if err != nil {
		return engineError(dir, ev, err)
	}
	var r Record
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
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
