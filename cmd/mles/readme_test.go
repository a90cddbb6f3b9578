package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mles/mles/internal/mlestest"
	"github.com/mles/mles/internal/poll"
)

// TestREADMESession runs the session README shows, with the real binaries:
// the server on its no-flag default (self-signed TLS) and mlescat clients.
func TestREADMESession(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	dir := t.TempDir()
	mles := mlestest.BuildBin(t, dir, "mles", "github.com/mles/mles/cmd/mles")
	mlescat := mlestest.BuildBin(t, dir, "mlescat", "github.com/mles/mles/cmd/mlescat")
	port := mlestest.FreePort(t)
	url := "wss://localhost:" + strconv.Itoa(port)

	// make run: the server with no flag but the port.
	srv := mlestest.StartProc(t, mles, net.JoinHostPort("localhost", strconv.Itoa(port)), nil, nil, "-p", strconv.Itoa(port))
	if !strings.Contains(srv.Output(), "self-signed") {
		t.Errorf("server log does not say it uses a self-signed certificate:\n%s", srv.Output())
	}

	// bob listens.
	bob := exec.Command(mlescat, "-k", url, "-uid", "bob", "-channel", "example")
	bob.Env = mlestest.CleanEnv()
	bobIn, err := bob.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	bobOut, err := bob.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	bobErr := &mlestest.LockedBuffer{}
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
	poll.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if out := runCat(t, mlescat, url, "probe", "example", ""); !strings.Contains(out, `{"uid":"bob","channel":"example"}`) {
			return fmt.Errorf("bob's join not in history yet: %q", out)
		}
		return nil
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
	_ = srv.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-srv.Done:
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
	cmd.Env = mlestest.CleanEnv()
	cmd.Stdin = strings.NewReader(input)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Logf("mlescat %s: %v: %s", uid, err, errb.String())
	}
	return out.String()
}
