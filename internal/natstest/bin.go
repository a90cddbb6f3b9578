package natstest

import (
	"os"
	"sync"
	"testing"

	"github.com/mles/mles/internal/mlestest"
)

// serverPkg is the nats-server main package, at the version go.mod
// requires.
const serverPkg = "github.com/nats-io/nats-server/v2"

// bin is the nats-server binary shared by the tests of a test binary: it
// is built when the first of them needs it and removed when the last one
// still using it ends. A test starting after every user ended builds it
// again, which the Go build cache makes a link of about two seconds.
var bin struct {
	mu    sync.Mutex
	dir   string // holds the binary while users > 0
	path  string // the binary; empty until built
	users int
}

// serverBin returns the nats-server binary, building it if needed, and
// counts tb among its users until it ends.
func serverBin(tb testing.TB) string {
	tb.Helper()
	bin.mu.Lock()
	defer bin.mu.Unlock()
	if bin.users == 0 {
		dir, err := os.MkdirTemp("", "natstest-")
		if err != nil {
			tb.Fatal(err)
		}
		bin.dir, bin.path = dir, ""
	}
	bin.users++
	// Before the build, which may fail the test: the directory still goes.
	// Cleanups run last-in first-out, so this runs after the processes
	// started with the binary are killed.
	tb.Cleanup(releaseBin)
	if bin.path == "" {
		bin.path = mlestest.BuildBin(tb, bin.dir, "nats-server", serverPkg)
	}
	return bin.path
}

// releaseBin ends a test's use of the binary.
func releaseBin() {
	bin.mu.Lock()
	defer bin.mu.Unlock()
	bin.users--
	if bin.users == 0 {
		_ = os.RemoveAll(bin.dir)
	}
}
