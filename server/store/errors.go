package store

import (
	"fmt"
	"time"
)

// Error is an error of the store's own, a constant (as codec.ProtocolError).
type Error string

// Error returns "store: " followed by the text.
func (e Error) Error() string { return "store: " + string(e) }

// ErrClosed is returned by Flush and LoadAll after Close.
const ErrClosed Error = "closed"

// CorruptError is a history directory the store cannot read: a file truncated or overwritten,
// or the engine failing (or panicking) on what it found. Open and LoadAll return it; the
// server cannot start with the directory as it is. Err is the engine's error, which names the
// damaged file when it knows it; File is the file the engine reported as corrupt, if any.
type CorruptError struct {
	Dir  string
	File string
	Err  error
}

func (e *CorruptError) Error() string {
	file := ""
	if e.File != "" {
		file = e.File + ": "
	}
	return fmt.Sprintf("store: history in %s is damaged: %s%v; move the directory away "+
		"(mv %s %s.damaged) and start again with empty history, or restore it from a backup",
		e.Dir, file, e.Err, e.Dir, e.Dir)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// LockedError is a history directory in use by another Store, in this process or another:
// Open waited Options.LockWait for it and gave up.
type LockedError struct {
	Dir  string
	Wait time.Duration
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("store: history in %s is in use by another server (its lock was held for %v); "+
		"stop that server or give this one another --history-dir", e.Dir, e.Wait)
}
