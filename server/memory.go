package server

import (
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// memReleaser hands the heap's free pages back to the OS once connection
// setup has gone quiet after a burst.
//
// Why: a burst of TLS handshakes leaves tens of KB of garbage per
// connection, and Go's GC lets the heap run to twice its live size
// (GOGC=100), so after 15k joins the process keeps about twice the memory
// its connections need, and the background scavenger never returns pages
// below that goal. Once no connection has opened for ReleaseQuiet, one
// forced collection (debug.FreeOSMemory, on the ticker goroutine, never on
// a loop) brings RSS down to what is live; steady message traffic allocates
// little (two objects per published message), so it stays there. It runs
// once per quiet period, so a busy server never pays for it twice.
//
// Owned by the ticker goroutine (OnTick).
type memReleaser struct {
	quiet      time.Duration
	lastOpened uint64
	quietSince time.Time
	released   bool
	sample     [1]metrics.Sample
	minAllocs  uint64 // bytes allocated since the last release that make one worth it
	lastAllocs uint64
	free       func() // debug.FreeOSMemory; replaced in tests
}

func newMemReleaser(quiet time.Duration) *memReleaser {
	m := &memReleaser{quiet: quiet, minAllocs: 16 << 20, free: debug.FreeOSMemory}
	m.sample[0].Name = "/gc/heap/allocs:bytes"
	return m
}

// tick is called once per server tick with the count of connections opened
// so far.
func (m *memReleaser) tick(now time.Time, opened uint64) {
	if m.quiet <= 0 {
		return
	}
	if opened != m.lastOpened || m.quietSince.IsZero() {
		m.lastOpened, m.quietSince, m.released = opened, now, false
		return
	}
	if m.released || now.Sub(m.quietSince) < m.quiet {
		return
	}
	m.released = true
	// Only worth a collection when a good amount was allocated since the
	// last one: garbage not yet collected does not show as free memory, so
	// the cumulative allocation count is the signal, not the free pages.
	metrics.Read(m.sample[:])
	var allocs uint64
	if m.sample[0].Value.Kind() == metrics.KindUint64 {
		allocs = m.sample[0].Value.Uint64()
	}
	if allocs-m.lastAllocs < m.minAllocs {
		return
	}
	m.lastAllocs = allocs
	m.free()
}
