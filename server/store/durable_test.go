package store

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mles/mles/internal/mlestest"
	"github.com/mles/mles/internal/poll"
)

// logBuffer collects a store's log lines (all levels) for a test to read.
type logBuffer struct{ mlestest.LockedBuffer }

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// lostWarning is in the warning about a damaged log.
const lostWarning = "history lost"

// openLogged opens dir with its log lines in a new logBuffer.
func openLogged(t *testing.T, dir string, o Options) (*Store, *logBuffer) {
	t.Helper()
	logs := new(logBuffer)
	o.Dir, o.Logger = dir, logs.logger()
	return open(t, o), logs
}

// durableFile returns the counter of dir's sidecar, failing when there is none.
func durableFile(t *testing.T, dir string) uint64 {
	t.Helper()
	n, ok, err := readDurable(dir)
	if err != nil || !ok {
		t.Fatalf("sidecar: %v, %v", ok, err)
	}
	return n
}

func TestDurableCleanRestart(t *testing.T) {
	dir := t.TempDir()
	s, _ := openLogged(t, dir, Options{})
	for i := range 50 {
		mustAppend(t, s, fmt.Sprint("c", i%5), rec(uint64(i), false, "x"))
	}
	// The channel holding the newest records is dropped: the arrival counter of what is
	// stored goes down, the one at metaKey does not.
	mustAppend(t, s, "newest", rec(1, false, "y"))
	if !s.Drop("newest") {
		t.Fatal("Drop = false")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := durableFile(t, dir); n != 51 {
		t.Fatalf("sidecar after Close = %d, want 51", n)
	}
	for range 2 {
		s, logs := openLogged(t, dir, Options{})
		// What it loads is on disk: the log replayed was fsynced (syncFS.Open).
		if n := s.Stats().Syncs; n == 0 {
			t.Fatal("the log replayed at Open was not fsynced")
		}
		if got := load(t, s); len(got) != 5 {
			t.Fatalf("loaded %d channels", len(got))
		}
		if st := s.Stats(); st.Lost != 0 || strings.Contains(logs.String(), lostWarning) {
			t.Fatalf("clean restart: Lost = %d, log:\n%s", st.Lost, logs)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDurableGarbageLog(t *testing.T) {
	dir := t.TempDir()
	s, _ := openLogged(t, dir, Options{})
	for i := range 300 {
		mustAppend(t, s, fmt.Sprint("c", i%3), rec(uint64(i), false, "x"))
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Garbage at offset 0 of the newest log: Pebble replays nothing of it.
	f, err := os.OpenFile(filepath.Join(dir, storeFilesLog(t, dir)), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("\xa5GARBAGE\x00\xff\x5a\x13\x37garbage"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()

	s, logs := openLogged(t, dir, Options{})
	n := 0
	for _, recs := range load(t, s) {
		n += len(recs)
	}
	st := s.Stats()
	line := logs.String()
	t.Logf("loaded %d of 300; Lost = %d; log:\n%s", n, st.Lost, line)
	if st.Lost == 0 || st.Lost != uint64(300-n) {
		t.Fatalf("Stats.Lost = %d, want %d", st.Lost, 300-n)
	}
	if !strings.Contains(line, "level=WARN") || !strings.Contains(line, lostWarning) ||
		!strings.Contains(line, dir) || !strings.Contains(line, fmt.Sprintf("missing=%d", st.Lost)) {
		t.Fatalf("no warning naming the directory and the count:\n%s", line)
	}
	// It keeps serving, and says it once.
	mustAppend(t, s, "c0", rec(1000, false, "after"))
	if got := load(t, s)["c0"]; len(got) == 0 || string(got[len(got)-1].Payload) != "after" {
		t.Fatalf("append after the warning: %q", payloads(got))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, logs = openLogged(t, dir, Options{})
	if st := s.Stats(); st.Lost != 0 || strings.Contains(logs.String(), lostWarning) {
		t.Fatalf("warned again: Lost = %d\n%s", st.Lost, logs)
	}
}

// storeFilesLog names the newest log of dir.
func storeFilesLog(t *testing.T, dir string) string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	newest := ""
	for _, e := range es {
		if strings.HasSuffix(e.Name(), ".log") {
			newest = max(newest, e.Name())
		}
	}
	if newest == "" {
		t.Fatal("no log")
	}
	return newest
}

// A torn end of records that were never fsynced is what a crash leaves: no warning.
func TestDurableTornUnsynced(t *testing.T) {
	s, _ := openLogged(t, t.TempDir(), Options{Sync: SyncPolicy{Mode: SyncNone}})
	for i := range 100 {
		mustAppend(t, s, "c", rec(uint64(i), false, "synced"))
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		mustAppend(t, s, "c", rec(uint64(100+i), false, "written, never fsynced"))
		for s.Stats().Written <= uint64(100+i) { // one batch each
			time.Sleep(100 * time.Microsecond)
		}
	}
	// A copy while it runs is what a crash leaves; then the last batches are torn.
	dir := copyDir(t, s.o.Dir)
	if n := durableFile(t, dir); n != 100 {
		t.Fatalf("sidecar = %d, want 100 (what Flush fsynced)", n)
	}
	path := filepath.Join(dir, storeFilesLog(t, dir))
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()-100); err != nil {
		t.Fatal(err)
	}
	c, logs := openLogged(t, dir, Options{})
	got := load(t, c)["c"]
	if len(got) < 100 || len(got) >= 150 {
		t.Fatalf("loaded %d records, want 100 to 149\n%s", len(got), logs)
	}
	if st := c.Stats(); st.Lost != 0 || strings.Contains(logs.String(), lostWarning) {
		t.Fatalf("torn end of unsynced records: Lost = %d\n%s", st.Lost, logs)
	}
}

func TestDurableSidecarBad(t *testing.T) {
	for _, tc := range []struct {
		name, content string // "" removes the file
		warn          bool
	}{
		{"missing", "", false},
		{"garbage", "\x00\xffnot a counter", true},
		{"empty", " ", true},
		{"bad checksum", "mles-durable 99999 00000000\n", true},
		{"torn", "mles-durable 99999", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, _ := openLogged(t, dir, Options{})
			mustAppend(t, s, "c", rec(1, false, "x"), rec(2, false, "y"))
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, durableName)
			if tc.content == "" {
				os.Remove(path)
			} else if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			s, logs := openLogged(t, dir, Options{})
			if got := payloads(load(t, s)["c"]); got != "x y" {
				t.Fatalf("loaded %q", got)
			}
			line := logs.String()
			if st := s.Stats(); st.Lost != 0 || strings.Contains(line, lostWarning) {
				t.Fatalf("Lost = %d\n%s", st.Lost, line)
			}
			if got := strings.Contains(line, "unreadable"); got != tc.warn {
				t.Fatalf("warned about the file: %v, want %v\n%s", got, tc.warn, line)
			}
			// An fsync writes it again, within sidecarEvery.
			mustAppend(t, s, "c", rec(3, false, "z"))
			if err := s.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			poll.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
				if n, ok, err := readDurable(dir); !ok || err != nil || n != 3 {
					return fmt.Errorf("sidecar: %d, %v, %v; want 3", n, ok, err)
				}
				return nil
			})
		})
	}
}

func TestDurableFormat(t *testing.T) {
	for _, n := range []uint64{0, 1, 300, 1<<64 - 1} {
		if got, ok := parseDurable(formatDurable(n)); !ok || got != n {
			t.Errorf("round trip of %d: %d, %v", n, got, ok)
		}
	}
	b := formatDurable(12345)
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x04
		if _, ok := parseDurable(c); ok {
			t.Errorf("%q (byte %d changed) parses", c, i)
		}
	}
}

// With SyncAlways under steady traffic the fsyncs run back to back; the sidecar is written
// at most every sidecarEvery (and by Flush).
func TestDurableSidecarRate(t *testing.T) {
	s, _ := openLogged(t, t.TempDir(), Options{Sync: SyncPolicy{Mode: SyncAlways}})
	start := time.Now()
	for i := 0; time.Since(start) < 800*time.Millisecond; i++ {
		mustAppend(t, s, "c", rec(uint64(i), false, "x"))
		time.Sleep(time.Millisecond)
	}
	took := time.Since(start)
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	writes := s.fs.side.writes.Load()
	t.Logf("%v: %d batches, %d fsyncs, %d sidecar writes", took.Round(time.Millisecond), st.Batches, st.Syncs, writes)
	if limit := uint64(took/sidecarEvery) + 2; writes > limit || writes == 0 {
		t.Fatalf("%d sidecar writes in %v, want 1 to %d", writes, took, limit)
	}
}
