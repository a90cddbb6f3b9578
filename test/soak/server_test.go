//go:build soak

package soak_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/mles/mles/internal/mlestest"
)

// serverProc is the mles binary under test, running as a child process so
// that its RSS and descriptors are its own and the test's 1,000+ client
// sockets do not count against its fd limit.
type serverProc struct {
	*mlestest.Proc
	pid  int
	port int
	log  *logTail
}

// buildServer compiles cmd/mles into a temporary directory. Building the
// real binary (not an in-process server.Server) is the point of the soak:
// it runs what operators run, with its flag parsing and signal handling.
func buildServer(t *testing.T) string {
	return mlestest.BuildBin(t, t.TempDir(), "mles", "github.com/mles/mles/cmd/mles")
}

// startServer runs bin with args on 127.0.0.1:port and waits until it
// listens: the log line of OnBoot and a loopback dial that connects (the
// first alone could race the listener's accept queue). Its output is kept
// in a logTail, shown if the test fails; the process is killed on cleanup
// if it still runs.
func startServer(t *testing.T, bin string, port int, args []string) *serverProc {
	t.Helper()
	lt := newLogTail()
	argv := append([]string{"-p", strconv.Itoa(port), "--addr", "127.0.0.1"}, args...)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	p := mlestest.StartProc(t, bin, addr, lt, func(*mlestest.Proc) error {
		if lt.count(`msg=listening`) == 0 {
			return errors.New("no listening line in its log")
		}
		return nil
	}, argv...)
	t.Logf("server: mles %s (pid %d)", strings.Join(argv, " "), p.Cmd.Process.Pid)
	return &serverProc{Proc: p, pid: p.Cmd.Process.Pid, port: port, log: lt}
}

func (p *serverProc) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

// procStats is one reading of the server process.
type procStats struct {
	rssKiB int64
	fds    int
}

// readProc reads VmRSS from /proc/PID/status and counts /proc/PID/fd.
func readProc(pid int) (procStats, error) {
	var ps procStats
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) < 1 {
				return ps, fmt.Errorf("VmRSS line %q", line)
			}
			if ps.rssKiB, err = strconv.ParseInt(f[0], 10, 64); err != nil {
				return ps, fmt.Errorf("VmRSS line %q: %w", line, err)
			}
		}
	}
	if ps.rssKiB == 0 {
		return ps, errors.New("no VmRSS in /proc/PID/status")
	}
	ps.fds, err = countFDs(pid)
	return ps, err
}

// countFDs counts the open descriptors of process pid.
func countFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

// tcpEstablished returns the remote ports of the ESTABLISHED IPv4 sockets
// whose local port is port: on loopback, the server's side of every client
// connection still open. A slow consumer that stopped reading cannot see
// the server's close (the FIN waits behind the data it does not read), so
// the test watches the server's socket leave ESTABLISHED instead.
func tcpEstablished(port int) (map[int]bool, error) {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return nil, err
	}
	est := make(map[int]bool)
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Scan() // column titles
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[3] != "01" { // 01: TCP_ESTABLISHED
			continue
		}
		lp, ok1 := hexPort(f[1])
		rp, ok2 := hexPort(f[2])
		if ok1 && ok2 && lp == port {
			est[rp] = true
		}
	}
	return est, sc.Err()
}

// hexPort parses the port of a /proc/net/tcp address, "0100007F:1F90".
func hexPort(a string) (int, bool) {
	i := strings.IndexByte(a, ':')
	if i < 0 {
		return 0, false
	}
	v, err := strconv.ParseUint(a[i+1:], 16, 16)
	return int(v), err == nil
}

// logTail keeps the server's output for the test log: the first lines
// (start-up) and the last ones, and counts the lines the checks rely on.
// It is the process's stdout and stderr, written by exec's copy goroutine.
type logTail struct {
	mu      sync.Mutex
	partial []byte
	head    []string
	tail    []string // ring of the last tailMax lines
	next    int
	lines   int
	counts  map[string]int
	watched []string
}

const (
	headMax = 100
	tailMax = 400
)

// Substrings of slog text lines that the soak counts.
const (
	logSlow  = `msg="slow consumer"`
	logError = `level=ERROR`
	logWarn  = `level=WARN`
)

func newLogTail() *logTail {
	return &logTail{
		counts:  make(map[string]int),
		watched: []string{`msg=listening`, logSlow, logError, logWarn},
	}
}

func (l *logTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.addLocked(string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
	if len(l.partial) > 64<<10 { // a runaway line without newline
		l.addLocked(string(l.partial))
		l.partial = l.partial[:0]
	}
	return len(p), nil
}

func (l *logTail) addLocked(line string) {
	l.lines++
	for _, w := range l.watched {
		if strings.Contains(line, w) {
			l.counts[w]++
		}
	}
	if len(l.head) < headMax {
		l.head = append(l.head, line)
		return
	}
	if len(l.tail) < tailMax {
		l.tail = append(l.tail, line)
		return
	}
	l.tail[l.next] = line
	l.next = (l.next + 1) % tailMax
}

// count returns how many lines contained s, one of the watched substrings.
func (l *logTail) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[s]
}

// grep returns up to n kept lines that contain s.
func (l *logTail) grep(s string, n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range l.orderedLocked() {
		if strings.Contains(line, s) && len(out) < n {
			out = append(out, line)
		}
	}
	return out
}

func (l *logTail) orderedLocked() []string {
	out := append([]string(nil), l.head...)
	if len(l.tail) < tailMax {
		return append(out, l.tail...)
	}
	out = append(out, l.tail[l.next:]...)
	return append(out, l.tail[:l.next]...)
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	kept := len(l.head) + len(l.tail)
	for i, line := range l.orderedLocked() {
		if i == headMax && l.lines > kept {
			fmt.Fprintf(&b, "... (%d lines left out) ...\n", l.lines-kept)
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	if len(l.partial) > 0 {
		b.Write(l.partial)
		b.WriteByte('\n')
	}
	return b.String()
}
