package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mles/mles/codec"
	"github.com/mles/mles/internal/mlestest"
	"github.com/mles/mles/internal/poll"
	"github.com/mles/mles/internal/testserver"
	"github.com/mles/mles/server"
)

// startServer runs a plain in-process server on a loopback port.
func startServer(t *testing.T) string {
	t.Helper()
	s := testserver.Start(t, server.Options{
		Addr:   "127.0.0.1:0",
		Plain:  true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	return "ws://" + s.Addr().String() + "/"
}

// TestRunExit: mlescat reports how its session ended, also when standard
// input is already at its end (README's `echo ... | mlescat` pattern): a
// refused join is an error with the server's close code and reason, a
// normal session is not.
func TestRunExit(t *testing.T) {
	t.Setenv("MLES_KEY", "") // the tokens below are computed without a key
	url := startServer(t)
	good := codec.AuthToken("alice", "example", "")
	tests := []struct {
		name  string
		args  []string
		input string
		want  string // substring of the error; "" for success
	}{
		// A normal session: one line sent, then end of input.
		{"joined", []string{url, "-uid", "alice", "-channel", "example", "-auth", good}, "hello\n", ""},
		// Nothing to send at all.
		{"joined, no input", []string{url, "-uid", "alice", "-channel", "example"}, "", ""},
		// A wrong token: the server refuses the join with 1008.
		{"refused", []string{url, "-uid", "alice", "-channel", "example", "-auth", "0000000000000000"}, "hello\n", "1008 auth failed"},
		{"refused, no input", []string{url, "-uid", "alice", "-channel", "example", "-auth", "0000000000000000"}, "", "1008 auth failed"},
		// A uid the server does not accept.
		{"bad uid", []string{url, "-uid", "älice", "-channel", "example"}, "", "1008 invalid uid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(tc.args, strings.NewReader(tc.input), &out)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("run: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("run: err %v, want one with %q", err, tc.want)
			}
		})
	}
}

// TestListen: with -listen, mlescat stays after its input ends and prints
// what arrives, until the server closes the session (here at shutdown,
// 1001).
func TestListen(t *testing.T) {
	t.Setenv("MLES_KEY", "")
	s := testserver.Start(t, server.Options{
		Addr:         "127.0.0.1:0",
		Plain:        true,
		DrainTimeout: 2 * time.Second,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	url := "ws://" + s.Addr().String() + "/"
	out := &mlestest.LockedBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run([]string{"-listen", url, "-uid", "bob", "-channel", "listen"}, strings.NewReader(""), out)
	}()
	poll.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if m := s.Stats().Members; m != 1 {
			return fmt.Errorf("%d members, want bob", m)
		}
		return nil
	})
	// Its input ended long ago; a message sent now still reaches it.
	if err := run([]string{url, "-uid", "alice", "-channel", "listen"}, strings.NewReader("after the end of input\n"), io.Discard); err != nil {
		t.Fatalf("alice: %v", err)
	}
	poll.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !strings.Contains(out.String(), "after the end of input") {
			return fmt.Errorf("bob printed %q", out.String())
		}
		return nil
	})
	select {
	case err := <-done:
		t.Fatalf("mlescat -listen left before the server closed it: %v", err)
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "1001") {
			t.Fatalf("after shutdown: %v, want the server's 1001", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("mlescat -listen did not end when the server shut down")
	}
}
