package server

import (
	"testing"
	"time"
)

// TestMemReleaser: the release runs once after connection setup has been
// quiet for the period, never while connections keep opening, and again
// only after a new burst.
func TestMemReleaser(t *testing.T) {
	m := newMemReleaser(2 * time.Second)
	m.minAllocs = 0 // release after any allocation
	calls := 0
	m.free = func() { calls++ }
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

	steps := []struct {
		sec    int
		opened uint64
		want   int // releases so far
	}{
		{0, 10, 0},  // first tick: the quiet period starts
		{1, 20, 0},  // connections still opening
		{2, 30, 0},  // still opening: quiet restarts
		{3, 30, 0},  // quiet for 1 s
		{4, 30, 1},  // quiet for 2 s: release
		{5, 30, 1},  // once per quiet period
		{9, 30, 1},  // still the same period
		{10, 31, 1}, // a new connection: a new period
		{11, 31, 1}, // quiet for 1 s
		{12, 31, 2}, // quiet for 2 s: release again
	}
	for _, st := range steps {
		m.tick(at(st.sec), st.opened)
		if calls != st.want {
			t.Fatalf("at %ds (opened %d): %d releases, want %d", st.sec, st.opened, calls, st.want)
		}
	}

	off := newMemReleaser(-1)
	off.minAllocs = 0
	off.free = func() { t.Fatal("released with ReleaseQuiet < 0") }
	for s := range 10 {
		off.tick(at(s), 1)
	}
}
