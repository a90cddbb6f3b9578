package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mles/mles/internal/mlestest"
	"github.com/mles/mles/internal/poll"
)

// migrateReq is the sysctl that moves connections queued at a closing
// listener of a SO_REUSEPORT group to another listener of the group
// (Linux 5.14+) instead of resetting them.
const migrateReq = "/proc/sys/net/ipv4/tcp_migrate_req"

// TestRollingRestart: the sequence README gives for a restart on one host.
// A new process starts on the same port beside the old one (--reuseport),
// the old one gets SIGTERM: its listener closes at once and its members
// get 1001 over --drain-time; they reconnect and land on the new process.
// Throughout, a prober opens and joins a new connection every few
// milliseconds: none is refused or reset.
func TestRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	old, err := os.ReadFile(migrateReq)
	if err != nil || os.WriteFile(migrateReq, []byte("1"), 0o644) != nil {
		t.Skipf("cannot set %s (not root, or an old kernel): the switch can reset the connections queued at the old listener", migrateReq)
	}
	t.Cleanup(func() { _ = os.WriteFile(migrateReq, old, 0o644) })

	mles := mlestest.BuildBin(t, t.TempDir(), "mles", "github.com/mles/mles/cmd/mles")
	port := mlestest.FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := []string{"--plain", "--reuseport", "--addr", "127.0.0.1", "-p", strconv.Itoa(port), "--reactors", "2",
		"--drain-time", "1s", "--drain-timeout", "3s", "--log-level", "warn"}
	listening := func(p *mlestest.Proc) error {
		if !strings.Contains(p.Output(), "msg=listening") {
			return errors.New("not listening yet")
		}
		return nil
	}
	oldProc := mlestest.StartProc(t, mles, addr, nil, listening, args...)

	dialer := websocket.Dialer{Subprotocols: []string{"mles-websocket"}, HandshakeTimeout: 10 * time.Second}
	join := func(uid string) (*websocket.Conn, error) {
		c, _, err := dialer.Dial("ws://"+addr+"/", nil)
		if err != nil {
			return nil, err
		}
		return c, c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"uid":%q,"channel":"roll"}`, uid))
	}

	// Members: on 1001 they reconnect, as a client should.
	const members = 20
	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		reconnects int
		failures   []string
		stop       = make(chan struct{})
	)
	fail := func(format string, a ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, a...))
		mu.Unlock()
	}
	for i := range members {
		c, err := join(fmt.Sprintf("m%d", i))
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, _, err := c.ReadMessage()
				if err == nil {
					continue
				}
				c.Close()
				select {
				case <-stop: // the test's own end
					return
				default:
				}
				var ce *websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
					fail("member %d: %v, want close 1001", i, err)
					return
				}
				if c, err = join(fmt.Sprintf("m%d", i)); err != nil {
					fail("member %d reconnecting: %v", i, err)
					return
				}
				mu.Lock()
				reconnects++
				mu.Unlock()
			}
		}()
	}

	// The prober: a new connection and a join every few milliseconds.
	var probes atomic.Int64
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Millisecond):
			}
			c, err := join(fmt.Sprintf("probe%d", i))
			if err != nil {
				fail("probe %d: %v", i, err)
				continue
			}
			c.Close()
			probes.Add(1)
		}
	}()

	newProc := mlestest.StartProc(t, mles, addr, nil, listening, args...)
	if err := oldProc.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-oldProc.Done:
	case <-time.After(20 * time.Second):
		t.Fatal("the old process did not exit")
	}
	poll.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if reconnects < members {
			return fmt.Errorf("%d of %d members reconnected", reconnects, members)
		}
		return nil
	})
	before := probes.Load()
	poll.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if probes.Load() < before+20 {
			return errors.New("the prober is not getting through")
		}
		return nil
	})
	close(stop)
	<-probeDone
	if newProc.Running() {
		_ = newProc.Cmd.Process.Signal(syscall.SIGINT)
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d probes, %d reconnects, old process exit %v", probes.Load(), reconnects, oldProc.Err)
	if len(failures) > 0 {
		t.Fatalf("%d failures during the switch, first: %s", len(failures), failures[0])
	}
	if code := oldProc.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("old process exit code %d", code)
	}
}
