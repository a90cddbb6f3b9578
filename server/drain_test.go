package server_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/internal/mlestest"
	"github.com/mles/mles/internal/poll"
	"github.com/mles/mles/server"
)

// TestDrainSpread: a lame-duck drain turns Ready false before the first
// member is closed and refuses new connections at the TCP level (the
// listener is gone); the 1001 closes are spread over the drain time
// rather than sent at once; members keep exchanging messages until their
// turn; every member gets 1001 after everything sent before it.
func TestDrainSpread(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		// ReusePort: one listening socket per loop, all of them closed.
		port := mlestest.FreePort(t)
		ts := startServer(t, m, func(o *server.Options) {
			o.Reactors = 2
			o.ReusePort = true
			o.Addr = fmt.Sprintf("127.0.0.1:%d", port)
		})
		const members, spread = 24, 1200 * time.Millisecond
		var clients []*rawClient
		for i := range members {
			clients = append(clients, ts.join(t, fmt.Sprintf("m%d", i), "drain"))
		}
		ts.waitMembers(t, members)
		exchange(t, clients, "before")
		if !ts.Ready() {
			t.Fatal("not ready before the drain")
		}

		type closed struct {
			at      time.Time
			code    ws.StatusCode
			ready   bool // Ready() when the close arrived
			got     int  // messages from the talker received before it
			readErr error
		}
		res := make([]closed, members)
		var wg sync.WaitGroup
		// Member 0 talks throughout the drain; the others count what they
		// receive from it until their close.
		for i := 1; i < members; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					msg, err := clients[i].recv(10 * time.Second)
					if err != nil {
						var ce *closeError
						if errors.As(err, &ce) {
							res[i] = closed{at: time.Now(), code: ce.code, ready: ts.Ready(), got: res[i].got}
						} else {
							res[i].readErr = err
						}
						return
					}
					if msg.op == ws.OpText {
						res[i].got++
					}
				}
			}()
		}
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- ts.Drain(context.Background(), spread) }()
		// The talker sends until its own turn comes.
		sent := 0
		for time.Since(start) < spread {
			if err := clients[0].send(ws.OpText, fmt.Appendf(nil, "during %d", sent)); err != nil {
				break
			}
			sent++
			time.Sleep(10 * time.Millisecond) // the pace of a chat, not a wait for a condition
		}
		wg.Wait()
		if err := <-done; err != nil {
			t.Fatalf("Drain: %v", err)
		}

		var times []time.Duration
		for i := 1; i < members; i++ {
			r := res[i]
			if r.readErr != nil {
				t.Fatalf("member %d: %v", i, r.readErr)
			}
			if r.code != ws.StatusGoingAway {
				t.Fatalf("member %d closed with %d, want 1001", i, r.code)
			}
			if r.ready {
				t.Fatalf("member %d was closed while the server still reported ready", i)
			}
			times = append(times, r.at.Sub(start))
		}
		slices.Sort(times)
		first, median, last := times[0], times[len(times)/2], times[len(times)-1]
		t.Logf("closes after %v (first), %v (median), %v (last) of a %v spread; the talker sent %d", first, median, last, spread, sent)
		if last-first < spread/2 || median < spread/4 || median > spread*3/4+200*time.Millisecond {
			t.Fatalf("closes not spread over %v: first %v, median %v, last %v", spread, first, median, last)
		}
		// Members closed late received the talker's messages sent while
		// they were still there.
		if late := res[slices.IndexFunc(res[1:], func(r closed) bool { return r.at.Sub(start) == last })+1]; late.got < 2 {
			t.Fatalf("the last member closed received %d messages during the drain", late.got)
		}

		// The listener is gone: a new connection is refused by the kernel.
		if c, err := net.DialTimeout("tcp", ts.addr, shortWait); err == nil {
			c.Close()
			t.Fatal("a connection was accepted after the drain")
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial after the drain: %v, want connection refused", err)
		}
		ts.waitConns(t, 0)
	})
}

// TestDrainEmpty: a drain with no connection left does not wait out its
// spread (a restart would otherwise take the whole drain time).
func TestDrainEmpty(t *testing.T) {
	ts := startServer(t, modes[1], nil)
	c := ts.join(t, "only", "empty")
	ts.waitMembers(t, 1)
	start := time.Now()
	go func() {
		time.Sleep(100 * time.Millisecond) // the member leaves early in the drain
		c.Close()
	}()
	if err := ts.Drain(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("a drain of a minute with its last connection gone after 100 ms took %v", took)
	}
}

// TestDrainQueuedServed: a connection the kernel queued before the
// listeners closed is accepted during the drain; it is served (upgrade,
// join, messages), not reset at OnOpen. A rolling restart's prober saw
// that reset when its connection was accepted between the drain's flag
// and the listeners' close.
func TestDrainQueuedServed(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, nil)
		a := ts.join(t, "a", "queued")
		ts.waitMembers(t, 1)
		ts.MarkLameDuck()
		b := ts.join(t, "b", "queued")
		ts.waitMembers(t, 2)
		exchange(t, []*rawClient{a, b}, "queued")
	})
}

// TestDrainMidHandshake: connections still in their handshake when a
// spread drain starts are left to finish it: completed half-way through
// the spread, their upgrade gets 101, and they are closed with 1001 like
// the members. Before, a round could
// close one mid-upgrade, which its client saw as a reset.
func TestDrainMidHandshake(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, func(o *server.Options) { o.Reactors = 1 })
		const members, pending, spread = 40, 8, 4 * time.Second
		var clients []*rawClient
		for i := range members {
			clients = append(clients, ts.join(t, fmt.Sprintf("m%d", i), "mid"))
		}
		ts.waitMembers(t, members)
		type half struct {
			conn net.Conn
			rest []byte
		}
		var halves []half
		for range pending {
			conn, _, err := ts.dialTransport(dialConfig{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			req := []byte(mlestest.UpgradeRequest(ts.addr, newWSKey(), nil))
			if _, err := conn.Write(req[:len(req)/2]); err != nil {
				t.Fatal(err)
			}
			halves = append(halves, half{conn, req[len(req)/2:]})
		}
		ts.waitConns(t, members+pending)

		var closedMembers atomic.Int64
		var wg sync.WaitGroup
		for i, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if code, _, err := c.awaitClose(2 * spread); code != ws.StatusGoingAway {
					t.Errorf("member %d: close %d (%v), want 1001", i, code, err)
				}
				closedMembers.Add(1)
			}()
		}
		done := make(chan error, 1)
		go func() { done <- ts.Drain(context.Background(), spread) }()
		poll.CheckFor(t, 2*spread, 5*time.Millisecond, func() error {
			if n := closedMembers.Load(); n < members/2 {
				return fmt.Errorf("%d of %d members closed", n, members)
			}
			return nil
		})
		var late []*rawClient
		for i, h := range halves {
			if _, err := h.conn.Write(h.rest); err != nil {
				t.Fatalf("handshake %d: the rest of the request: %v", i, err)
			}
			c := &rawClient{conn: h.conn, br: bufio.NewReaderSize(h.conn, 4096)}
			_ = h.conn.SetReadDeadline(time.Now().Add(shortWait))
			resp, err := http.ReadResponse(c.br, &http.Request{Method: http.MethodGet})
			if err != nil {
				t.Fatalf("handshake %d, completed during the drain: %v", i, err)
			}
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("handshake %d, completed during the drain: status %d", i, resp.StatusCode)
			}
			late = append(late, c)
		}
		for i, c := range late {
			if code, _, err := c.awaitClose(2 * spread); code != ws.StatusGoingAway {
				t.Errorf("late joiner %d: close %d (%v), want 1001", i, code, err)
			}
		}
		wg.Wait()
		if err := <-done; err != nil {
			t.Fatalf("Drain: %v", err)
		}
	})
}
