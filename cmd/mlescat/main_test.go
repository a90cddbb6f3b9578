package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mles/mles/codec"
	"github.com/mles/mles/server"
)

// startServer runs a plain in-process server on a loopback port.
func startServer(t *testing.T) string {
	t.Helper()
	s, err := server.New(server.Options{
		Addr:   "127.0.0.1:0",
		Plain:  true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
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
