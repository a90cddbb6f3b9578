package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/server"
)

// history joins channel as uid and returns what it replays, in order,
// until the message want (the last one sent).
func history(t *testing.T, ts *testServer, uid, channel, want string) []string {
	t.Helper()
	c := ts.join(t, uid, channel)
	defer c.Close()
	var got []string
	for {
		m, err := c.recv(10 * time.Second)
		if err != nil {
			t.Fatalf("%s: after %d items: %v", uid, len(got), err)
		}
		got = append(got, fmt.Sprintf("%v:%s", m.op, m.data))
		if string(m.data) == want {
			return got
		}
	}
}

// TestHistoryDirRestart: with HistoryDir, a restart keeps the history:
// a joiner after it replays exactly what a joiner before it did (text,
// binary, join frames, one order), and what is sent after the restart is
// stored after it, through a second restart.
func TestHistoryDirRestart(t *testing.T) {
	dir := t.TempDir()
	opts := func(o *server.Options) { o.HistoryDir = dir; o.History = 500; o.HistorySync = "always" }
	ts := startServer(t, modes[1], opts)
	a := ts.join(t, "a", "keep")
	b := ts.join(t, "b", "keep")
	ts.waitMembers(t, 2)
	for i := range 100 {
		op := ws.OpText
		if i%3 == 0 {
			op = ws.OpBinary
		}
		a.mustSend(t, op, fmt.Appendf(nil, "a%d", i))
		b.mustSend(t, ws.OpText, fmt.Appendf(nil, "b%d", i))
	}
	// Everything is in before probe1 joins: its join frame comes after
	// b99 in the stored order, as after the restart.
	a.recvUntil(t, ws.OpText, "b99")
	b.recvUntil(t, ws.OpBinary, "a99") // 99 is a multiple of 3
	before := history(t, ts, "probe1", "keep", "b99")
	a.Close()
	b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	ts = startServer(t, modes[1], opts)
	after := history(t, ts, "probe2", "keep", "b99")
	if fmt.Sprint(after) != fmt.Sprint(before[:len(after)]) || len(after) != len(before) {
		t.Fatalf("history after the restart differs:\nbefore %v\n after %v", before, after)
	}
	c := ts.join(t, "c", "keep")
	c.mustSend(t, ws.OpText, []byte("c-after"))
	again := history(t, ts, "probe3", "keep", "c-after")
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	ts = startServer(t, modes[1], opts)
	third := history(t, ts, "probe4", "keep", "c-after")
	if fmt.Sprint(third) != fmt.Sprint(again) {
		t.Fatalf("history after the second restart differs:\nbefore %v\n after %v", again, third)
	}
	if m := ts.Metrics(ctx); m.Store == nil {
		t.Fatal("no store figures in Metrics")
	}
}

// TestHistoryDirSweep: a channel the idle sweep drops is dropped from the
// store too, and one that is not idle survives the restart.
func TestHistoryDirSweep(t *testing.T) {
	dir := t.TempDir()
	opts := func(o *server.Options) { o.HistoryDir = dir; o.HistorySync = "always" }
	ts := startServer(t, modes[1], opts)
	for _, ch := range []string{"swept", "kept"} {
		c := ts.join(t, "a", ch)
		c.mustSend(t, ws.OpText, []byte(ch+" message"))
		_ = history(t, ts, "probe", ch, ch+" message")
		c.Close()
	}
	ts.waitMembers(t, 0)
	ts.SweepIdleChannels(time.Now().Add(time.Hour)) // both idle: both swept
	k := ts.join(t, "a", "kept")
	k.mustSend(t, ws.OpText, []byte("kept again"))
	_ = history(t, ts, "probe", "kept", "kept again")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	ts = startServer(t, modes[1], opts)
	// The channel made again after the sweep: a's join, its message.
	if got, want := fmt.Sprint(history(t, ts, "probe2", "kept", "kept again")), `[1:{"uid":"a","channel":"kept"} 1:kept again]`; got != want {
		t.Fatalf("kept after the sweep and the restart: %v, want %v", got, want)
	}
	c := ts.join(t, "late", "swept")
	if m, err := c.recv(300 * time.Millisecond); err == nil {
		t.Fatalf("the swept channel replayed %q after the restart", m.data)
	}
}
