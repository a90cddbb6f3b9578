package peers

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mles/mles/internal/mlestest"
	"github.com/mles/mles/internal/poll"
)

// corruptChannels is the history a clean run leaves in the store: each
// channel's writer "w-<channel>" sent this many messages.
var corruptChannels = map[string]int{"c1": 300, "c2": 100}

// damage is one way of breaking a copy of the store.
type damage struct {
	name     string
	file     string // relative to the store; "" for the intact copy
	truncate int    // new length; -1 to keep it
	garbage  int    // offset of 16 garbage bytes; -1 for none; the file's length to append them
}

// TestHistoryDirCorrupt: a store a clean shutdown left, copied and then
// damaged in one way per subtest (each file cut to several lengths, 0
// included; garbage written at several offsets or appended). The server
// must either start and serve (members join every channel and exchange a
// message; what history it replays is the writer's messages in order, no
// garbage) or exit non-zero with a line naming the store; never print a Go
// panic, never hang. The intact copy must start with all history.
func TestHistoryDirCorrupt(t *testing.T) {
	bin := mlesBin(t, "--history-dir")
	pristine := t.TempDir()
	s := newServer(t, bin, "P", historyArgs(pristine)...)
	s.start(t)
	for ch, n := range corruptChannels {
		watch := newMember(t, s, "watch", ch)
		w := newMember(t, s, "w-"+ch, ch)
		if err := w.pace(n, 10, 10*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		poll.CheckFor(t, historyDeadline, 10*time.Millisecond, func() error {
			return lacking([]*member{watch}, func(*member) []expect { return []expect{{w.uid, 1, n}} })
		})
		watch.close()
		w.close()
	}
	s.stop(t)

	files := storeFiles(t, pristine)
	if len(files) == 0 {
		t.Fatalf("no file with content under the --history-dir %s after a clean stop; log tail:\n%s", pristine, mlestest.Tail(s.proc.Output(), 3000))
	}
	var desc []string
	for _, f := range files {
		desc = append(desc, fmt.Sprintf("%s (%d bytes)", f.rel, f.size))
	}
	t.Logf("store after a clean stop: %s", strings.Join(desc, ", "))

	for _, d := range damages(files) {
		t.Run(d.name, func(t *testing.T) { runDamaged(t, bin, pristine, d) })
	}
}

type storeFile struct {
	rel  string
	size int
}

// storeFiles lists the non-empty regular files under dir, largest first.
func storeFiles(t *testing.T, dir string) []storeFile {
	t.Helper()
	var files []storeFile
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if info.Size() > 0 {
			files = append(files, storeFile{rel, int(info.Size())})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(files, func(i, j int) bool {
		if files[i].size != files[j].size {
			return files[i].size > files[j].size
		}
		return files[i].rel < files[j].rel
	})
	return files
}

// damages returns the intact copy, then every damage of the largest file
// and the main ones of the others.
func damages(files []storeFile) []damage {
	ds := []damage{{name: "intact", truncate: -1, garbage: -1}}
	seen := map[string]bool{}
	add := func(f storeFile, truncate, garbage int) {
		name := strings.NewReplacer("/", "_", ".", "_").Replace(f.rel)
		switch {
		case truncate >= 0:
			if truncate >= f.size {
				return
			}
			name += "_cut" + strconv.Itoa(truncate)
		case garbage == f.size:
			name += "_append"
		default:
			garbage = max(0, min(garbage, f.size-1))
			name += "_garbage" + strconv.Itoa(garbage)
		}
		if !seen[name] {
			seen[name] = true
			ds = append(ds, damage{name: name, file: f.rel, truncate: truncate, garbage: garbage})
		}
	}
	for i, f := range files {
		n := f.size
		add(f, 0, -1)
		add(f, n/2, -1)
		add(f, -1, 0)
		add(f, -1, n/2)
		if i == 0 {
			add(f, 1, -1)
			add(f, n/3, -1)
			add(f, n-1, -1)
			add(f, -1, n/3)
			add(f, -1, n-8)
			add(f, -1, n)
		}
	}
	return ds
}

// apply breaks the copy of the store in dir.
func (d damage) apply(t *testing.T, dir string) {
	t.Helper()
	if d.file == "" {
		return
	}
	path := filepath.Join(dir, d.file)
	if d.truncate >= 0 {
		if err := os.Truncate(path, int64(d.truncate)); err != nil {
			t.Fatal(err)
		}
		return
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	junk := make([]byte, 16)
	r := rand.New(rand.NewPCG(uint64(d.garbage), 13))
	for i := range junk {
		junk[i] = byte(r.Uint32())
	}
	junk[0] ^= 0x80 // never a no-op at the first byte, whatever was there
	if _, err := f.WriteAt(junk, int64(d.garbage)); err != nil {
		t.Fatal(err)
	}
}

// copyTree copies the regular files and directories under src into dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		info, err := e.Info()
		if err != nil {
			return err
		}
		switch {
		case e.IsDir():
			return os.MkdirAll(to, info.Mode().Perm())
		case e.Type().IsRegular():
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(to, b, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// runDamaged starts the server on a damaged copy of pristine and checks
// the outcome: serves, or exits non-zero naming the store.
func runDamaged(t *testing.T, bin, pristine string, d damage) {
	work := t.TempDir()
	copyTree(t, pristine, work)
	d.apply(t, work)
	port := mlestest.FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	p := spawn(t, bin, append([]string{"--plain", "--addr", "127.0.0.1", "-p", strconv.Itoa(port),
		"--reactors", "2", "--limit", "5000", "--log-level", "info"}, historyArgs(work)...)...)
	srv := &server{name: d.name, bin: bin, addr: addr, proc: p, procs: []*mlestest.Proc{p}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server output (tail):\n%s", mlestest.Tail(p.Output(), 4000))
		}
	})

	err := poll.Until(t.Context(), historyDeadline, 20*time.Millisecond, func() error {
		if !p.Running() {
			return nil
		}
		if err := listening(p); err != nil {
			return err
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		t.Fatalf("hangs: neither serving nor exited: %v", err)
	}
	checkNoPanic(t, srv)
	if !p.Running() {
		out := p.Output()
		code := p.Cmd.ProcessState.ExitCode()
		if code == 0 {
			t.Fatalf("exited with code 0 without serving (%v)", p.Err)
		}
		if !namesStore(out, work, d.file) {
			t.Errorf("exited with code %d but no line names the store (%s or %s)", code, work, d.file)
		}
		t.Logf("refused to start, exit code %d: %s", code, strings.TrimSpace(mlestest.Tail(out, 600)))
		return
	}

	var kept []string
	lostAny := false
	for _, ch := range []string{"c1", "c2"} {
		a := newMember(t, srv, "a", ch)
		b := newMember(t, srv, "b", ch)
		if err := a.sendNext(); err != nil {
			t.Fatal(err)
		}
		poll.CheckFor(t, historyDeadline, 10*time.Millisecond, func() error {
			if b.last().arrival("a", 1) == 0 {
				return fmt.Errorf("channel %s: b has not received a's message (it got %d of the history)", ch, len(b.last().numbers("w-"+ch)))
			}
			return nil
		})
		if err := anomalies([]*member{b}); err != nil {
			t.Errorf("channel %s: served a damaged history: %v", ch, err)
		}
		got := b.last().numbers("w-" + ch)
		if d.file == "" && len(got) != corruptChannels[ch] {
			t.Errorf("intact store, channel %s: history has %d of the writer's %d messages: %s", ch, len(got), corruptChannels[ch], ranges(got))
		}
		kept = append(kept, fmt.Sprintf("%s %d of %d", ch, len(got), corruptChannels[ch]))
		lostAny = lostAny || len(got) < corruptChannels[ch]
		a.close()
		b.close()
	}
	if !p.Running() {
		t.Fatalf("exited after serving: %v", p.Err)
	}
	stopProc(t, d.name, p)
	checkNoPanic(t, srv)
	w := warnings(p.Output())
	t.Logf("started and served; history kept: %s; its warnings: %s", strings.Join(kept, ", "), w)
	if lostAny && w == "none" {
		// Allowed (it recovered), but an operator is not told: worth a look.
		t.Logf("NOTE: history was lost without a WARN or ERROR line")
	}
}

// namesStore reports whether out has a line naming the store: its
// directory, or the damaged file by path or name.
func namesStore(out, dir, file string) bool {
	if strings.Contains(out, dir) {
		return true
	}
	return file != "" && (strings.Contains(out, filepath.Join(dir, file)) || strings.Contains(out, filepath.Base(file)))
}

// warnings returns the server's WARN and ERROR lines, apart from the
// ones every run logs, for the record of what a damaged store did.
func warnings(out string) string {
	var ws []string
	for _, line := range strings.Split(out, "\n") {
		if (strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR")) &&
			!strings.Contains(line, "msg=listening") && !strings.Contains(line, "SIGTERM") {
			ws = append(ws, strings.TrimSpace(line))
		}
	}
	if len(ws) == 0 {
		return "none"
	}
	return strings.Join(ws, " | ")
}
