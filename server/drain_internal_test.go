package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listenerFDs returns the descriptors of the process's listening sockets
// bound to addr.
func listenerFDs(t *testing.T, addr *net.TCPAddr) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var fds []int
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || v != 1 {
			continue
		}
		if sa, err := unix.Getsockname(fd); err == nil && sameAddr(sa, addr) {
			fds = append(fds, fd)
		}
	}
	return fds
}

// TestCloseListenersStandIn: after the listeners close, an accept that gnet
// may still make on their descriptor numbers (readiness taken from epoll
// just before the swap) finds nothing to accept (EAGAIN), and does not fail
// (EINVAL), which gnet takes for a broken listener and answers by stopping
// the whole engine: a drain stopped the server under a busy test run.
func TestCloseListenersStandIn(t *testing.T) {
	for _, reuse := range []bool{false, true} {
		t.Run("reuseport="+strconv.FormatBool(reuse), func(t *testing.T) {
			s, err := New(Options{Addr: "127.0.0.1:0", Plain: true, Reactors: 2, ReusePort: reuse,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := s.Shutdown(ctx); err != nil {
					t.Errorf("Shutdown: %v", err)
				}
			}()
			fds := listenerFDs(t, s.Addr().(*net.TCPAddr))
			if len(fds) == 0 {
				t.Fatal("no listening socket found")
			}
			if n, err := s.closeListeners(); err != nil || n != len(fds) {
				t.Fatalf("closeListeners: %d of %d, %v", n, len(fds), err)
			}
			for _, fd := range fds {
				if _, _, err := unix.Accept(fd); !errors.Is(err, unix.EAGAIN) {
					t.Fatalf("accept on the closed listener's descriptor %d: %v, want EAGAIN", fd, err)
				}
			}
			if got := listenerFDs(t, s.Addr().(*net.TCPAddr)); len(got) != 0 {
				t.Fatalf("still listening on %v", got)
			}
		})
	}
}
