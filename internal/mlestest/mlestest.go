// Package mlestest is the test harness shared by the packages' tests, as
// net/http/httptest is for net/http: a loopback port, the environment the
// binaries should see, building and running the real binary, and the
// upgrade request of a raw client. Waiting for conditions is package poll,
// which tlsbridge's own tests use too.
package mlestest

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mles/mles/internal/poll"
)

// FreePort asks the kernel for a free loopback port. Another process could
// take it before the server binds; the server then fails with its own
// error, which the test shows. A port is handed out once per test binary:
// the kernel may give a port just closed to the next bind(0), so two calls
// in a row could otherwise return the same port for two listeners (seen:
// a test's DNS server and its redirect listener on one port).
func FreePort(tb testing.TB) int {
	tb.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		handedMu.Lock()
		seen := handed[port]
		handed[port] = true
		handedMu.Unlock()
		if !seen {
			return port
		}
	}
	tb.Fatal("free port: the kernel keeps giving ports already handed out")
	return 0
}

var (
	handedMu sync.Mutex
	handed   = map[int]bool{} // ports FreePort returned in this process
)

// CleanEnv is the test's environment without the variables the binaries
// read (MLES_KEY would demand auth tokens, MLES_<FLAG> would change flags,
// RUST_LOG the log level), so they see README's defaults.
func CleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "MLES_") || strings.HasPrefix(kv, "RUST_LOG=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// BuildBin builds the command pkg into dir/name and returns its path.
func BuildBin(tb testing.TB, dir, name, pkg string) string {
	tb.Helper()
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// Proc is a running binary started by StartProc.
type Proc struct {
	Cmd  *exec.Cmd
	Out  io.Writer     // its stdout and stderr
	Done chan struct{} // closed once it exited; Err is then set
	Err  error         // what Wait returned
}

// Output returns what the process has written so far.
func (p *Proc) Output() string { return fmt.Sprint(p.Out) }

// Running reports whether the process has not exited yet.
func (p *Proc) Running() bool {
	select {
	case <-p.Done:
		return false
	default:
		return true
	}
}

// StartProc runs bin with args and CleanEnv, its output going to out (a
// LockedBuffer when nil), waits until ready returns nil (nil: until
// dialAddr accepts TCP connections), and kills it when the test ends,
// showing the tail of its output if the test failed.
func StartProc(tb testing.TB, bin, dialAddr string, out io.Writer, ready func(*Proc) error, args ...string) *Proc {
	tb.Helper()
	return StartProcEnv(tb, nil, bin, dialAddr, out, ready, args...)
}

// StartProcEnv is StartProc with env added to CleanEnv.
func StartProcEnv(tb testing.TB, env []string, bin, dialAddr string, out io.Writer, ready func(*Proc) error, args ...string) *Proc {
	tb.Helper()
	if out == nil {
		out = &LockedBuffer{}
	}
	p := &Proc{Cmd: exec.Command(bin, args...), Out: out, Done: make(chan struct{})}
	p.Cmd.Stdout, p.Cmd.Stderr = out, out
	p.Cmd.Env = append(CleanEnv(), env...)
	if err := p.Cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", bin, err)
	}
	go func() { p.Err = p.Cmd.Wait(); close(p.Done) }()
	tb.Cleanup(func() {
		if p.Running() {
			_ = p.Cmd.Process.Kill()
			<-p.Done
		}
		if tb.Failed() {
			tb.Logf("%s %s, output (tail):\n%s", filepath.Base(bin), strings.Join(args, " "), Tail(fmt.Sprint(out), 4000))
		}
	})
	err := poll.Until(tb.Context(), 30*time.Second, 20*time.Millisecond, func() error {
		if !p.Running() {
			return fmt.Errorf("exited: %v", p.Err)
		}
		if ready != nil {
			if err := ready(p); err != nil {
				return err
			}
		}
		c, err := net.DialTimeout("tcp", dialAddr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		tb.Fatalf("%s not ready on %s: %v", filepath.Base(bin), dialAddr, err)
	}
	return p
}

// LockedBuffer is a bytes.Buffer safe for a process's output and a
// test's reads at once.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Tail returns the last n bytes of s.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// UpgradeRequest returns a valid Mles opening handshake (RFC 6455 section
// 4.1, subprotocol mles-websocket) for host with Sec-WebSocket-Key key,
// without the header lines whose text starts with one of drop, and with
// the extra lines added at the end of the block.
func UpgradeRequest(host, key string, extra []string, drop ...string) string {
	lines := []string{
		"GET /chat?x=1 HTTP/1.1",
		"Host: " + host,
		"Upgrade: websocket",
		"Connection: Upgrade",
		"Sec-WebSocket-Key: " + key,
		"Sec-WebSocket-Version: 13",
		"Sec-WebSocket-Protocol: mles-websocket",
	}
	var b strings.Builder
	for _, l := range lines {
		skip := false
		for _, d := range drop {
			skip = skip || strings.HasPrefix(l, d)
		}
		if !skip {
			b.WriteString(l + "\r\n")
		}
	}
	for _, l := range extra {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}
