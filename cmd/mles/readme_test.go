package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestREADMESession runs the session README shows, with the real binaries:
// the server on its no-flag default (self-signed TLS) and mlescat clients.
func TestREADMESession(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	dir := t.TempDir()
	mles := buildBin(t, dir, "mles", "github.com/mles/mles/cmd/mles")
	mlescat := buildBin(t, dir, "mlescat", "github.com/mles/mles/cmd/mlescat")
	port := freePort(t)
	url := "wss://localhost:" + strconv.Itoa(port)

	// make run: the server with no flag but the port.
	srv := startServerProc(t, mles, net.JoinHostPort("localhost", strconv.Itoa(port)), "-p", strconv.Itoa(port))
	if !strings.Contains(srv.out.String(), "self-signed") {
		t.Errorf("server log does not say it uses a self-signed certificate:\n%s", srv.out.String())
	}

	// bob listens.
	bob := exec.Command(mlescat, "-k", url, "-uid", "bob", "-channel", "example")
	bob.Env = cleanEnv()
	bobIn, err := bob.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	bobOut, err := bob.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	bobErr := &lockedBuffer{}
	bob.Stderr = bobErr
	if err := bob.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bob.Process.Kill(); _ = bob.Wait() })
	bobLines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(bobOut)
		for sc.Scan() {
			bobLines <- sc.Text()
		}
		close(bobLines)
	}()
	// bob's join is stored in history once he has joined: wait for that
	// through a probe that reads history.
	waitFor(t, 20*time.Second, func() bool {
		out := runCat(t, mlescat, url, "probe", "example", "")
		return strings.Contains(out, `{"uid":"bob","channel":"example"}`)
	})

	// alice says hello; bob receives it.
	runCat(t, mlescat, url, "alice", "example", "hello from alice\n")
	// A probe that joined before bob is in bob's history; nothing else may come first.
	for got := false; !got; {
		select {
		case line := <-bobLines:
			switch line {
			case "hello from alice":
				got = true
			case `{"uid":"probe","channel":"example"}`:
			default:
				t.Fatalf("bob got %q, want %q", line, "hello from alice")
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("bob got nothing; stderr: %s", bobErr.String())
		}
	}

	// carol joins later and gets the history: joins (without auth) and the message.
	out := runCat(t, mlescat, url, "carol", "example", "")
	for _, want := range []string{`{"uid":"bob","channel":"example"}`, `{"uid":"alice","channel":"example"}`, "hello from alice"} {
		if !strings.Contains(out, want) {
			t.Errorf("carol's history lacks %q:\n%s", want, out)
		}
	}
	if strings.Index(out, `{"uid":"alice","channel":"example"}`) > strings.Index(out, "hello from alice") {
		t.Errorf("history out of order:\n%s", out)
	}

	// SIGTERM: bob is told 1001 and the server exits.
	_ = srv.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-srv.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("server did not exit after SIGTERM")
	}
	_ = bobIn.Close()
	done := make(chan struct{})
	go func() { _ = bob.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("mlescat did not exit after the server shut down")
	}
	if !strings.Contains(bobErr.String(), "1001") {
		t.Errorf("bob was not told 1001 on shutdown: %s", bobErr.String())
	}
}

func runCat(t *testing.T, bin, url, uid, channel, input string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-k", url, "-uid", uid, "-channel", channel)
	cmd.Env = cleanEnv()
	cmd.Stdin = strings.NewReader(input)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Logf("mlescat %s: %v: %s", uid, err, errb.String())
	}
	return out.String()
}

// serverProc is a built mles binary running as a child process of the test.
type serverProc struct {
	cmd  *exec.Cmd
	out  *lockedBuffer // its stdout and stderr
	done chan struct{} // closed once the process has exited
}

// startServerProc starts bin with args and README's environment, waits
// until dialAddr accepts TCP connections, and kills the process when the
// test ends, showing the tail of its output if the test failed.
func startServerProc(t *testing.T, bin, dialAddr string, args ...string) *serverProc {
	t.Helper()
	p := &serverProc{cmd: exec.Command(bin, args...), out: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Env = cleanEnv()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("server output (tail):\n%s", tail(p.out.String(), 4000))
		}
	})
	waitFor(t, 20*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", dialAddr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return p
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

func buildBin(t *testing.T, dir, name, pkg string) string {
	t.Helper()
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// cleanEnv drops MLES_* and RUST_LOG so that the binaries see README's defaults.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "MLES_") || strings.HasPrefix(kv, "RUST_LOG=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func waitFor(t *testing.T, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var _ io.Writer = (*lockedBuffer)(nil)
