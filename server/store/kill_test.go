//go:build unix

package store

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// The kill -9 test: a child process (this test binary again, TestKillChild) appends records at
// a steady rate and is killed with SIGKILL by the parent (TestKill), which then reopens the
// store and checks that every record appended more than killBound before the kill is there.
//
// The child notes each record's append time in a file it maps shared (times): the page cache
// keeps what a killed process stored in it, and a store to memory costs the child no system
// call. Slot 0 counts the records appended, slots 1 and 2 are when the last fsync began and
// ended (a hook around the store's fsyncs), records start at slot killHeader.
const (
	killChildEnv = "MLES_STORE_KILL_CHILD"
	killBound    = 100 * time.Millisecond
	killSlots    = 1 << 17
	killHeader   = 3
)

// killCase is one run of the child.
type killCase struct {
	name        string
	sync        string        // the store's policy
	slow        time.Duration // added to every fsync round: a slow disk
	payload     int           // bytes per record
	rate        int           // records a second
	minRun      time.Duration // the child appends at least this long
	inFlightMin time.Duration // kill once an fsync has been running this long (0: any fsync)
	maxRun      time.Duration // kill then anyway
}

// TestKill logs each case's loss window: the age at the kill of the oldest record lost. Before
// syncfs.go it was 80-390 ms (chat) and 870-900 ms (slow fsync); now it is a few ms, so
// killBound leaves a wide margin on a busy machine (under -race, beside two CPU hogs and a
// second run, the worst seen was 12 ms).
func TestKill(t *testing.T) {
	if testing.Short() {
		t.Skip("kills processes for seconds")
	}
	chatKill := 1200*time.Millisecond + rand.N(time.Second)
	cases := []killCase{
		// A slow disk: each fsync takes 600 ms more; the kill comes 250 ms into one.
		{name: "1s/slow-fsync", sync: "1s", slow: 600 * time.Millisecond, payload: 512, rate: 2000,
			minRun: 1500 * time.Millisecond, inFlightMin: 250 * time.Millisecond, maxRun: 20 * time.Second},
		{name: "always/slow-fsync", sync: SyncAlways, slow: 600 * time.Millisecond, payload: 512, rate: 2000,
			minRun: 1500 * time.Millisecond, inFlightMin: 250 * time.Millisecond, maxRun: 20 * time.Second},
		// Chat traffic (the process test's): 500 small records a second, which fill a 32 KiB
		// block of Pebble's log only every half second; the kill comes at a random point.
		{name: "1s/chat", sync: "1s", payload: 100, rate: 500,
			minRun: chatKill, maxRun: chatKill},
		// This machine's disk under 4 MB/s of records: the kill comes during a real fsync if
		// one is seen.
		{name: "1s/disk", sync: "1s", payload: 4096, rate: 1000,
			minRun: 1500 * time.Millisecond, maxRun: 4 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { killOnce(t, c) })
	}
}

// killOnce runs the child of c, kills it and checks what the store kept.
func killOnce(t *testing.T, c killCase) {
	dir := t.TempDir()
	timesPath := filepath.Join(t.TempDir(), "times")
	times := mapTimes(t, timesPath, true)
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$", "-test.v")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%s,%s,%d,%d,%d,%d", killChildEnv,
		dir, timesPath, c.sync, c.slow.Milliseconds(), c.payload, c.rate, killSlots))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "ready" {
	}
	go func() { // the rest of the child's output, until it dies
		for sc.Scan() {
		}
	}()
	start := time.Now()
	var inFlight time.Duration // how long the fsync at the kill had been running
	for {
		time.Sleep(time.Millisecond)
		run := time.Since(start)
		began, ended := atomic.LoadInt64(&times[1]), atomic.LoadInt64(&times[2])
		if began > ended {
			inFlight = time.Since(time.Unix(0, began))
		} else {
			inFlight = 0
		}
		if run >= c.maxRun || run >= c.minRun && began > ended && inFlight >= c.inFlightMin {
			break
		}
	}
	killAt := time.Now()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if c.inFlightMin > 0 && inFlight < c.inFlightMin {
		t.Errorf("no fsync ran %v before the kill in %v: the case did not test what it should", c.inFlightMin, c.maxRun)
	}

	// What was appended, and when.
	n := int(atomic.LoadInt64(&times[0]))
	at := make([]int64, n) // 0: Append returned false
	dropped := 0
	for i := range n {
		if at[i] = atomic.LoadInt64(&times[killHeader+i]); at[i] <= 0 {
			at[i] = 0
			dropped++
		}
	}

	logs := new(logBuffer)
	s, err := Open(Options{Dir: dir, Limit: killSlots, Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	loaded := make([]bool, n+1) // the child may have appended one more than it counted
	count := 0
	err = s.LoadAll(func(channel string, recs []Record) {
		for _, r := range recs {
			i, ts, ok := parseKillPayload(r.Payload)
			switch {
			case !ok || int(i) > n || r.Order != i || channel != killChannel(int(i)):
				t.Errorf("channel %q: a record that was not appended: order %d, payload %d bytes", channel, r.Order, len(r.Payload))
			case int(i) < n && ts != at[i]:
				t.Errorf("record %d: time %d, appended at %d", i, ts, at[i])
			default:
				loaded[i] = true
				count++
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Lost != 0 || strings.Contains(logs.String(), lostWarning) {
		t.Errorf("a kill -9 reported lost records: Stats.Lost = %d\n%s", st.Lost, logs)
	}
	// Everything up to the first record missing is there, nothing after it.
	first := n
	for i := range n {
		if at[i] != 0 && !loaded[i] {
			first = i
			break
		}
	}
	for i := first; i <= n; i++ {
		if loaded[i] {
			t.Errorf("record %d is there but %d, appended before it, is not", i, first)
			break
		}
	}
	window := "none lost"
	if first < n {
		lostAt := time.Unix(0, at[first])
		window = fmt.Sprintf("lost records %d-%d, the oldest appended %v before the kill", first, n-1,
			killAt.Sub(lostAt).Round(time.Millisecond))
		if killAt.Sub(lostAt) > killBound {
			t.Errorf("record %d, appended %v before the kill, is lost (bound %v)", first, killAt.Sub(lostAt), killBound)
		}
	}
	t.Logf("%s: killed after %v, an fsync running for %v; appended %d (%d dropped), loaded %d; %s",
		c.name, killAt.Sub(start).Round(time.Millisecond), inFlight.Round(time.Millisecond), n-dropped, dropped, count, window)
}

// mapTimes maps the times file shared, creating it when create is set.
func mapTimes(t testing.TB, path string, create bool) []int64 {
	t.Helper()
	flag := os.O_RDWR
	if create {
		flag |= os.O_CREATE | os.O_EXCL
	}
	f, err := os.OpenFile(path, flag, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size := (killHeader + killSlots) * 8
	if create {
		if err := f.Truncate(int64(size)); err != nil {
			t.Fatal(err)
		}
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Munmap(b) })
	return unsafe.Slice((*int64)(unsafe.Pointer(&b[0])), len(b)/8)
}

func killChannel(i int) string { return "kill-" + strconv.Itoa(i%4) }

// killPayload is record i's payload: i, its append time, then filler.
func killPayload(dst []byte, i uint64, at int64) []byte {
	binary.BigEndian.PutUint64(dst, i)
	binary.BigEndian.PutUint64(dst[8:], uint64(at))
	for j := 16; j < len(dst); j++ {
		dst[j] = byte(i) ^ byte(j)
	}
	return dst
}

func parseKillPayload(p []byte) (i uint64, at int64, ok bool) {
	if len(p) < 16 {
		return 0, 0, false
	}
	i, at = binary.BigEndian.Uint64(p), int64(binary.BigEndian.Uint64(p[8:]))
	for j := 16; j < len(p); j++ {
		if p[j] != byte(i)^byte(j) {
			return 0, 0, false
		}
	}
	return i, at, true
}

// TestKillChild is the child of TestKill: it appends until it is killed.
func TestKillChild(t *testing.T) {
	spec := os.Getenv(killChildEnv)
	if spec == "" {
		t.Skip("the child process of TestKill")
	}
	f := strings.Split(spec, ",")
	dir, timesPath, policy := f[0], f[1], f[2]
	slowMs, _ := strconv.Atoi(f[3])
	size, _ := strconv.Atoi(f[4])
	rate, _ := strconv.Atoi(f[5])
	slots, _ := strconv.Atoi(f[6])
	times := mapTimes(t, timesPath, false)
	p, err := ParseSync(policy)
	if err != nil {
		t.Fatal(err)
	}
	slow := time.Duration(slowMs) * time.Millisecond
	hook := func(fsync func() error) error {
		atomic.StoreInt64(&times[1], time.Now().UnixNano())
		time.Sleep(slow)
		err := fsync()
		atomic.StoreInt64(&times[2], time.Now().UnixNano())
		return err
	}
	syncHook.Store(&hook)
	s, err := Open(Options{Dir: dir, Limit: slots, Sync: p})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	start := time.Now()
	ppid := os.Getppid()
	for i := 0; i < slots; {
		if os.Getppid() != ppid || time.Since(start) > time.Minute {
			return // the parent is gone
		}
		due := int(time.Since(start).Seconds() * float64(rate))
		for ; i < due && i < slots; i++ {
			payload := make([]byte, size) // the store keeps it until written
			at := time.Now().UnixNano()
			killPayload(payload, uint64(i), at)
			atomic.StoreInt64(&times[killHeader+i], at)
			if !s.Append(killChannel(i), Record{Order: uint64(i), Origin: 1, Seq: uint64(i) + 1, Op: OpBinary, Payload: payload}) {
				atomic.StoreInt64(&times[killHeader+i], 0)
			}
			atomic.StoreInt64(&times[0], int64(i+1))
		}
		time.Sleep(500 * time.Microsecond)
	}
	time.Sleep(time.Minute) // the parent kills us before
}
