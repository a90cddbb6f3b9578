package store

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"
)

// How a damaged log shows. Pebble replays its log up to the first record that does not read
// back and takes the rest for the torn end a crash leaves, so a log overwritten at its start
// opens as if it held nothing (TestDamagedFiles). The store keeps beside the engine a small
// file, mles.durable, with the arrival counter up to which every record is known to be on
// disk (each record appended takes the next counter); the engine holds the counter after its
// last batch (metaKey). At Open, a counter in the file above the one loaded means that
// records fsynced earlier are gone: Open logs a warning naming the directory and how many,
// counts them in Stats.Lost, and goes on with what it loaded.
//
// No false alarms: the file is written only after an fsync that covers the counter, so a
// kill -9 (which keeps what reached the OS) or the torn end of records never fsynced leaves
// it at or below what loads. The file is written to a temporary name, fsynced and renamed:
// after a power loss it holds either counter, never a torn one (a rename lost with the
// directory's entry leaves the older, lower counter: a missed warning, not a false one). A
// missing or unreadable file means unknown: nothing is compared.
//
// The file is rewritten at most once per round of fsyncs and not more than every
// sidecarEvery (a timer writes what waits), except by Close, which writes it before it
// returns.

const (
	durableName  = "mles.durable"
	sidecarEvery = 250 * time.Millisecond
)

// sidecar is the fsync loop's record of mles.durable. Its fields are under syncFS.mu; the file
// is written by the loop only, once Open has checked it (ready).
type sidecar struct {
	dir      string
	log      *slog.Logger
	ready    bool      // Open has checked the file and set recorded
	durable  uint64    // the highest arrival counter known to be on disk
	recorded uint64    // what the file says, or is being written to say
	at       time.Time // when the file was last written
	failing  bool      // the last write failed; the loop's only
	writes   atomic.Uint64
}

// next takes the waits that are done and returns the counter to write now, or 0; when a write
// is due later it arms timer. Called with syncFS.mu held.
func (sc *sidecar) next(ready []syncWait, timer *time.Timer) uint64 {
	if !sc.ready {
		return 0
	}
	force := false
	for _, w := range ready {
		sc.durable = max(sc.durable, w.arrival)
		force = force || w.final
	}
	if sc.durable <= sc.recorded {
		return 0
	}
	if wait := sidecarEvery - time.Since(sc.at); !force && wait > 0 {
		timer.Reset(wait)
		return 0
	}
	sc.recorded, sc.at = sc.durable, time.Now()
	return sc.durable
}

// write writes n to the file; a failure is logged once until a write succeeds again. It is
// not fatal: the file then lags, which can only hide a loss.
func (sc *sidecar) write(n uint64) {
	err := writeDurable(sc.dir, n)
	if err == nil {
		sc.writes.Add(1)
	}
	if err != nil && !sc.failing {
		sc.log.Warn("store: cannot record how much history is on disk; a damaged log would go unnoticed",
			"dir", sc.dir, "err", err)
	}
	sc.failing = err != nil
}

// formatDurable is the file's content: a tag, the counter, and a CRC of both.
func formatDurable(n uint64) []byte {
	b := fmt.Appendf(nil, "mles-durable %d", n)
	return fmt.Appendf(b, " %08x\n", crc32.ChecksumIEEE(b))
}

// parseDurable reads what formatDurable wrote.
func parseDurable(b []byte) (uint64, bool) {
	f := bytes.Fields(b)
	if len(f) != 3 || string(f[0]) != "mles-durable" || !bytes.HasSuffix(b, []byte("\n")) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(f[1]), 10, 64)
	if err != nil || !bytes.Equal(formatDurable(n), b) {
		return 0, false
	}
	return n, true
}

// readDurable reads the file of dir. ok is false when it is missing; err says why a file that
// is there cannot be used.
func readDurable(dir string) (n uint64, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, durableName))
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	if n, ok = parseDurable(b); !ok {
		return 0, false, errors.New("not a counter written by the store")
	}
	return n, true, nil
}

// writeDurable replaces the file of dir with n: a temporary file, fsynced, renamed over it.
func writeDurable(dir string, n uint64) error {
	tmp := filepath.Join(dir, durableName+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(formatDurable(n))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, durableName))
	}
	return err
}

// checkDurable compares, at Open, the counter loaded (s.arrival) with the file's, warns about
// a loss, and hands the file to the fsync loop.
func (s *Store) checkDurable() {
	loaded := s.arrival
	n, ok, err := readDurable(s.o.Dir)
	if err != nil {
		s.log.Warn("store: the record of how much history was on disk is unreadable; not checked",
			"file", filepath.Join(s.o.Dir, durableName), "err", err)
	}
	if ok && n > loaded {
		lost := n - loaded
		s.lost.Store(lost)
		s.log.Warn("store: history lost: the engine's log no longer holds records that were on disk; "+
			"it was damaged (the rest of the history is served)", "dir", s.o.Dir, "missing", lost)
		// Said once: the next Open compares with what is there now.
		if err := writeDurable(s.o.Dir, loaded); err != nil {
			s.log.Warn("store: cannot record how much history is on disk", "dir", s.o.Dir, "err", err)
		}
		n = loaded
	}
	fs := s.fs
	fs.mu.Lock()
	fs.side.ready = true
	fs.side.recorded = n // 0 when unknown: the first fsync writes the file
	fs.side.durable = n
	fs.mu.Unlock()
}
