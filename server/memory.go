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
	quiet       time.Duration
	lastOpened  uint64
	quietSince  time.Time
	released    bool
	sample      [1]metrics.Sample
	minReleased uint64
	free        func() // debug.FreeOSMemory; replaced in tests
}

func newMemReleaser(quiet time.Duration) *memReleaser {
	m := &memReleaser{quiet: quiet, minReleased: 16 << 20, free: debug.FreeOSMemory}
	m.sample[0].Name = "/memory/classes/heap/free:bytes"
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
	// Free and not yet returned to the OS: only worth a collection when
	// there is a good amount of it.
	metrics.Read(m.sample[:])
	if m.sample[0].Value.Kind() == metrics.KindUint64 && m.sample[0].Value.Uint64() < m.minReleased {
		return
	}
	m.free()
}
