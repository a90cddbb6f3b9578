package peers

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mles/mles/internal/mlestest"
)

// server is one mles process of a test, kept across restarts: the same
// port and flags every time.
type server struct {
	name  string
	bin   string
	addr  string // 127.0.0.1:port
	args  []string
	proc  *mlestest.Proc   // the current run
	procs []*mlestest.Proc // every run, oldest first
}

// newServer returns a server on a free port with the flags every test
// uses (plain WebSocket on loopback, two reactors, a history that holds
// all of a test's traffic, info logs) and extra; it does not start it.
func newServer(t *testing.T, bin, name string, extra ...string) *server {
	t.Helper()
	port := mlestest.FreePort(t)
	s := &server{name: name, bin: bin, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	s.args = append([]string{"--plain", "--addr", "127.0.0.1", "-p", strconv.Itoa(port),
		"--reactors", "2", "--limit", "5000", "--log-level", "info"}, extra...)
	return s
}

// url is the address a peer dials.
func (s *server) url() string { return "ws://" + s.addr + "/" }

// listening is StartProc's readiness check: the server's own log line.
func listening(p *mlestest.Proc) error {
	if !strings.Contains(p.Output(), "msg=listening") {
		return errors.New("no msg=listening in its log yet")
	}
	return nil
}

// start runs the server and waits until it logged that it listens and
// accepts TCP connections (StartProc kills it when the test ends and shows
// its log tail if the test failed).
func (s *server) start(t *testing.T) {
	t.Helper()
	s.proc = mlestest.StartProc(t, s.bin, s.addr, nil, listening, s.args...)
	s.procs = append(s.procs, s.proc)
}

// kill ends the current run with SIGKILL and waits for it.
func (s *server) kill(t *testing.T) {
	t.Helper()
	if err := s.proc.Cmd.Process.Kill(); err != nil {
		t.Fatalf("kill -9 %s: %v", s.name, err)
	}
	select {
	case <-s.proc.Done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s still running 20 s after kill -9", s.name)
	}
}

// stop sends SIGTERM and requires exit code 0 within a deadline.
func (s *server) stop(t *testing.T) {
	t.Helper()
	stopProc(t, s.name, s.proc)
}

// stopProc sends p SIGTERM and requires exit code 0 within 30 s.
func stopProc(t *testing.T, name string, p *mlestest.Proc) {
	t.Helper()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", name, err)
	}
	select {
	case <-p.Done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not exit within 30 s of SIGTERM; log tail:\n%s", name, mlestest.Tail(p.Output(), 3000))
	}
	if code := p.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("%s exited with code %d after SIGTERM (%v); log tail:\n%s", name, code, p.Err, mlestest.Tail(p.Output(), 3000))
	}
}

// panicTrace matches what the Go runtime prints for a panic or a fatal
// error: the server must report problems as errors, never crash.
var panicTrace = regexp.MustCompile(`(?m)panic:|^goroutine \d+ \[|^fatal error:`)

// checkNoPanic fails t when a run of any of servers printed a Go panic.
func checkNoPanic(t *testing.T, servers ...*server) {
	t.Helper()
	for _, s := range servers {
		for i, p := range s.procs {
			out := p.Output()
			if loc := panicTrace.FindStringIndex(out); loc != nil {
				t.Errorf("server %s (run %d) printed a Go panic trace:\n%s", s.name, i+1, mlestest.Tail(out[loc[0]:], 3000))
			}
		}
	}
}

// startTopology starts one server per key of peers, named by the key, each
// with --server-id and a --peer for every name in its value, and returns
// them sorted by name. No channel exists before a client joins, so the
// peer sessions start only then, with every server up.
func startTopology(t *testing.T, bin string, peers map[string][]string) []*server {
	t.Helper()
	names := make([]string, 0, len(peers))
	for n := range peers {
		names = append(names, n)
	}
	sort.Strings(names)
	byName := map[string]*server{}
	var servers []*server
	for _, n := range names {
		s := newServer(t, bin, n, "--server-id", n)
		byName[n] = s
		servers = append(servers, s)
	}
	for _, s := range servers {
		for _, p := range peers[s.name] {
			s.args = append(s.args, "--peer", byName[p].url())
		}
	}
	for _, s := range servers {
		s.start(t)
	}
	return servers
}

// spawn runs bin without waiting for anything, for runs that may exit at
// once (a damaged store). It is killed when the test ends.
func spawn(t *testing.T, bin string, args ...string) *mlestest.Proc {
	t.Helper()
	out := &mlestest.LockedBuffer{}
	p := &mlestest.Proc{Cmd: exec.Command(bin, args...), Out: out, Done: make(chan struct{})}
	p.Cmd.Stdout, p.Cmd.Stderr = out, out
	p.Cmd.Env = mlestest.CleanEnv()
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() { p.Err = p.Cmd.Wait(); close(p.Done) }()
	t.Cleanup(func() {
		if p.Running() {
			_ = p.Cmd.Process.Kill()
			<-p.Done
		}
	})
	return p
}

// describe names a server run for failure messages.
func (s *server) String() string { return fmt.Sprintf("%s(%s)", s.name, s.addr) }
