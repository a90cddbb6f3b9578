package store

import (
	"fmt"
	"time"
)

// The modes of a SyncPolicy (--history-sync).
const (
	// SyncAlways asks for an fsync after every batch. The fsyncs run one after another
	// beside the writer, each covering every batch written before it starts (group
	// commit): a power loss loses what was written during the fsync in flight, and the
	// queue.
	SyncAlways = "always"
	// SyncInterval fsyncs every Interval (when something was written): a power loss loses
	// up to Interval.
	SyncInterval = "interval"
	// SyncNone never fsyncs (but Flush and Close do): the OS writes back when it likes.
	SyncNone = "none"
)

// DefaultSync is the --history-sync default: write at once, fsync every second.
const DefaultSync = "1s"

// SyncPolicy says when the log is fsynced. Make one with ParseSync; the zero value means
// DefaultSync. A process killed (kill -9) loses only what was still queued whatever the
// policy: every batch is written to the OS as soon as the writer takes it, and fsyncs never
// hold the writer up (syncfs.go).
type SyncPolicy struct {
	// Mode is SyncAlways, SyncInterval or SyncNone.
	Mode string
	// Interval is the time between fsyncs in SyncInterval mode, else 0.
	Interval time.Duration
}

// String returns the policy as ParseSync reads it.
func (p SyncPolicy) String() string {
	if p.Mode == SyncInterval {
		return p.Interval.String()
	}
	return p.Mode
}

// ParseSync parses --history-sync: "always" (an fsync after every batch, back to back: group
// commit), a Go duration such as "1s" or "200ms" (fsync every interval; the default is
// DefaultSync), or "none" (never fsync; the OS writes back). Whatever the policy, each batch
// is written to the OS at once. The error names the bad value.
func ParseSync(s string) (SyncPolicy, error) {
	switch s {
	case SyncAlways, SyncNone:
		return SyncPolicy{Mode: s}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return SyncPolicy{}, fmt.Errorf("store: bad --history-sync %q: want %q, %q or a positive duration such as %q", s, SyncAlways, SyncNone, DefaultSync)
	}
	return SyncPolicy{Mode: SyncInterval, Interval: d}, nil
}

// check validates a policy that did not come from ParseSync.
func (p SyncPolicy) check() error {
	switch {
	case p.Mode == SyncAlways || p.Mode == SyncNone:
		if p.Interval != 0 {
			return fmt.Errorf("store: sync mode %q takes no interval (got %v)", p.Mode, p.Interval)
		}
	case p.Mode == SyncInterval:
		if p.Interval <= 0 {
			return fmt.Errorf("store: sync interval %v: want a positive duration", p.Interval)
		}
	default:
		return fmt.Errorf("store: unknown sync mode %q", p.Mode)
	}
	return nil
}
