package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// fixture writes a store whose history is partly in a table and partly in the log: 20
// channels of 10 records flushed to a table, then 5 more each in the log. It returns the
// directory and the payload expected at each (channel, Order).
func fixture(t *testing.T) (string, map[string]string) {
	t.Helper()
	want := map[string]string{}
	s := open(t, Options{Sync: SyncPolicy{Mode: SyncNone}})
	add := func(from, to int) {
		for c := range 20 {
			for i := from; i < to; i++ {
				p := fmt.Sprintf("c%d-%d", c, i)
				mustAppend(t, s, fmt.Sprint("ch", c), rec(uint64(i), i%4 == 3, p))
				want[fmt.Sprintf("ch%d/%d", c, i)] = p
			}
		}
		if err := s.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	add(0, 10)
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	add(10, 15)
	dir := s.o.Dir
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, want
}

// copyDir copies the regular files of src into a new temporary directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	es, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// storeFiles names the engine's files of dir by kind: the live log (the newest), the table,
// the MANIFEST and the OPTIONS file.
func storeFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, e := range es {
		n := e.Name()
		switch {
		case strings.HasSuffix(n, ".log"):
			files["log"] = max(files["log"], n)
		case strings.HasSuffix(n, ".sst"):
			files["sst"] = n
		case strings.HasPrefix(n, "MANIFEST-"):
			files["manifest"] = max(files["manifest"], n)
		case strings.HasPrefix(n, "OPTIONS-"):
			files["options"] = n
		}
	}
	if len(files) != 4 {
		t.Fatalf("fixture files: %v", files)
	}
	return files
}

// damage is one way of breaking a file of size n.
type damage struct {
	name  string
	apply func(f *os.File, n int64) error
}

func truncateAt(frac string, at func(n int64) int64) damage {
	return damage{"truncate " + frac, func(f *os.File, n int64) error { return f.Truncate(at(n)) }}
}

func garbageAt(where string, at func(n int64) int64) damage {
	return damage{"garbage at " + where, func(f *os.File, n int64) error {
		_, err := f.WriteAt([]byte("\xa5GARBAGE\x00\xff\x5a\x13\x37garbage"), max(0, min(at(n), n-16)))
		return err
	}}
}

var damages = []damage{
	truncateAt("to 0 (empty)", func(int64) int64 { return 0 }),
	truncateAt("to 1 byte", func(int64) int64 { return 1 }),
	truncateAt("to half", func(n int64) int64 { return n / 2 }),
	truncateAt("by 1 byte", func(n int64) int64 { return n - 1 }),
	garbageAt("start", func(int64) int64 { return 0 }),
	garbageAt("middle", func(n int64) int64 { return n / 2 }),
	garbageAt("end", func(n int64) int64 { return n }),
}

// TestDamagedFiles breaks each engine file in each way and checks that the store either opens
// and loads only true records, or refuses with a CorruptError that names the directory and
// says to move it away; never a panic or a hang. The outcomes are logged as a table.
func TestDamagedFiles(t *testing.T) {
	src, want := fixture(t)
	kinds := storeFiles(t, src)
	var table []string
	for _, kind := range []string{"log", "sst", "manifest", "options"} {
		for _, d := range damages {
			t.Run(kind+"/"+d.name, func(t *testing.T) {
				dir := copyDir(t, src)
				path := filepath.Join(dir, kinds[kind])
				f, err := os.OpenFile(path, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				fi, _ := f.Stat()
				if err := d.apply(f, fi.Size()); err != nil {
					t.Fatal(err)
				}
				f.Close()
				outcome := openDamaged(t, dir, want)
				table = append(table, fmt.Sprintf("%-9s %-20s %s", kind, d.name, outcome))
			})
		}
	}
	t.Logf("outcomes (kind, damage, result):\n%s", strings.Join(table, "\n"))
}

// openDamaged opens dir, loads it, checks what came back, and describes the outcome.
func openDamaged(t *testing.T, dir string, want map[string]string) string {
	t.Helper()
	s, err := Open(Options{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		loaded := 0
		err = s.LoadAll(func(channel string, recs []Record) {
			for _, r := range recs {
				k := fmt.Sprintf("%s/%d", channel, r.Order)
				if want[k] != string(r.Payload) {
					t.Errorf("loaded %s = %q, want %q", k, r.Payload, want[k])
				}
				loaded++
			}
		})
		s.Close()
		if err == nil {
			st := s.Stats()
			// The fixture closed cleanly: every record was on disk, so whatever is
			// missing is reported (durable.go).
			if missing := uint64(len(want) - loaded); st.Lost != missing {
				t.Errorf("%d records missing, Stats.Lost = %d", missing, st.Lost)
			}
			if loaded == len(want) {
				return "opens, all records"
			}
			return fmt.Sprintf("opens, %d of %d records (%d skipped, %d reported lost)", loaded, len(want), st.Skipped, st.Lost)
		}
	}
	checkCorrupt(t, dir, err)
	return "error: " + err.Error()
}

// checkCorrupt checks that err tells what to do about dir.
func checkCorrupt(t *testing.T, dir string, err error) {
	t.Helper()
	var ce *CorruptError
	if !errors.As(err, &ce) {
		t.Errorf("error is not a *CorruptError: %v", err)
		return
	}
	if msg := err.Error(); !strings.Contains(msg, dir) || !strings.Contains(msg, "move the directory away") {
		t.Errorf("error does not name the directory and what to do: %v", err)
	}
}

func TestBadRecordSkipped(t *testing.T) {
	var logs strings.Builder
	o := Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	s := open(t, o)
	mustAppend(t, s, "c", rec(1, false, "one"), rec(3, false, "three"))
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A value of an unknown version, a value too short, a key of no channel.
	for _, kv := range [][2][]byte{
		{appendKey(nil, "c", 2, 1000), []byte("\x09garbage value")},
		{appendKey(nil, "d", 1, 1001), []byte{valueVersion}},
		{[]byte("\x05ab"), []byte("not a key of ours")},
	} {
		if err := s.db.Set(kv[0], kv[1], pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	s = reopen(t, s, o)
	got := load(t, s)
	if len(got) != 1 || payloads(got["c"]) != "one three" {
		t.Fatalf("got %v", got)
	}
	if n := s.Stats().Skipped; n != 3 {
		t.Fatalf("Stats.Skipped = %d, want 3", n)
	}
	if !strings.Contains(logs.String(), "did not decode") {
		t.Fatalf("no warning logged:\n%s", logs.String())
	}
	// They were removed: the next Open finds none.
	if s = reopen(t, s, o); s.Stats().Skipped != 0 {
		t.Fatalf("bad records still there: Skipped = %d", s.Stats().Skipped)
	}
}

func TestDirUnusable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{
		file,                         // an empty regular file, not a directory
		filepath.Join(file, "under"), // a directory that cannot be made
	} {
		_, err := Open(Options{Dir: dir})
		if err == nil || !strings.Contains(err.Error(), dir) && !strings.Contains(err.Error(), file) {
			t.Errorf("Open(%q) = %v, want an error naming it", dir, err)
		}
	}
}

func TestDirNotWritable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes to read-only directories; TestDirUnusable covers a directory that cannot be used")
	}
	dir := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	_, err := Open(Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), dir) || !errors.Is(err, os.ErrPermission) {
		t.Fatalf("Open(read-only dir) = %v, want a permission error naming it", err)
	}
}

func TestLockedSameProcess(t *testing.T) {
	s := open(t, Options{})
	start := time.Now()
	_, err := Open(Options{Dir: s.o.Dir, LockWait: 100 * time.Millisecond})
	var le *LockedError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), s.o.Dir) {
		t.Fatalf("second Open = %v, want a *LockedError naming the directory", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("second Open took %v", d)
	}
	// Once the first closes, the directory opens again.
	reopen(t, s, Options{})
}

// lockHolderEnv makes the test binary a lock holder (TestLockHolder) for TestLockedOtherProcess.
const lockHolderEnv = "MLES_STORE_LOCK_HOLDER"

func TestLockHolder(t *testing.T) {
	dir := os.Getenv(lockHolderEnv)
	if dir == "" {
		t.Skip("the other process of TestLockedOtherProcess")
	}
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("holding")
	io.Copy(io.Discard, os.Stdin) // until the parent closes our stdin
	s.Close()
}

func TestLockedOtherProcess(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHolder$")
	cmd.Env = append(os.Environ(), lockHolderEnv+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var lines []string
	for sc := bufio.NewScanner(stdout); sc.Scan(); {
		if lines = append(lines, sc.Text()); sc.Text() == "holding" {
			break
		}
	}
	if !slices.Contains(lines, "holding") {
		t.Fatalf("the other process did not open the store: %q", lines)
	}
	_, err = Open(Options{Dir: dir, LockWait: 200 * time.Millisecond})
	var le *LockedError
	if !errors.As(err, &le) {
		t.Fatalf("Open while another process holds the store = %v, want a *LockedError", err)
	}
	// A restart that overlaps the old process's exit waits for it.
	stdin.Close()
	s, err := Open(Options{Dir: dir, LockWait: 30 * time.Second})
	if err != nil {
		t.Fatalf("Open after the other process let go = %v", err)
	}
	s.Close()
	io.Copy(io.Discard, stdout) // the rest of its output, until it exits
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the other process: %v", err)
	}
}
