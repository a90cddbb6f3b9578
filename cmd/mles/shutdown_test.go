package main

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mles/mles/internal/mlestest"
)

// TestShutdownUnderTraffic: SIGTERM while publishers are sending. Every
// client, publishers included, gets close 1001; every receiver saw its
// channel's messages in order with no gap up to the close; the process
// exits with status 0 within --drain-time (the spread of the closes) and
// --drain-timeout after it, and its port is closed.
func TestShutdownUnderTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	const (
		channels  = 4
		receivers = 9 // per channel, beside one publisher
		spread    = time.Second
		drain     = 3 * time.Second
	)
	mles := mlestest.BuildBin(t, t.TempDir(), "mles", "github.com/mles/mles/cmd/mles")
	port := mlestest.FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	srv := mlestest.StartProc(t, mles, addr, nil, nil, "-p", strconv.Itoa(port), "--reactors", "2",
		"--drain-time", spread.String(), "--drain-timeout", drain.String(), "--log-level", "info")

	dialer := websocket.Dialer{
		Subprotocols:     []string{"mles-websocket"},
		TLSClientConfig:  &tls.Config{InsecureSkipVerify: true},
		HandshakeTimeout: 10 * time.Second,
	}
	join := func(uid, channel string) *websocket.Conn {
		t.Helper()
		c, _, err := dialer.Dial("wss://"+addr+"/", nil)
		if err != nil {
			t.Fatalf("dial %s: %v", uid, err)
		}
		hdr := fmt.Sprintf(`{"uid":%q,"channel":%q}`, uid, channel)
		if err := c.WriteMessage(websocket.TextMessage, []byte(hdr)); err != nil {
			t.Fatal(err)
		}
		return c
	}

	type outcome struct {
		who      string
		code     int // close code received, -1 if none
		received uint64
		err      error
	}
	results := make(chan outcome, channels*(receivers+1))
	var wg sync.WaitGroup
	started := make(chan struct{}) // closed once every receiver got a message
	var firstMsg sync.WaitGroup
	firstMsg.Add(channels * receivers)
	go func() { firstMsg.Wait(); close(started) }()

	// closeCode reads until the connection ends and reports its close code.
	closeCode := func(err error) int {
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		return -1
	}
	for ch := range channels {
		channel := fmt.Sprintf("shutdown-%d", ch)
		for r := range receivers {
			c := join(fmt.Sprintf("r%d-%d", ch, r), channel)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				o := outcome{who: fmt.Sprintf("receiver %d on %s", r, channel)}
				var next uint64 // the publisher's next sequence number
				first := true
				for {
					typ, p, err := c.ReadMessage()
					if err != nil {
						o.code = closeCode(err)
						if o.code == -1 {
							o.err = err
						}
						break
					}
					if typ != websocket.BinaryMessage {
						continue // join frames of other members
					}
					seq := binary.BigEndian.Uint64(p)
					if !first && seq != next {
						o.err = fmt.Errorf("got seq %d, want %d", seq, next)
						break
					}
					if first {
						first = false
						firstMsg.Done()
					}
					next = seq + 1
					o.received++
				}
				results <- o
			}()
		}
		pub := join(fmt.Sprintf("p%d", ch), channel)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer pub.Close()
			o := outcome{who: "publisher on " + channel}
			// The publisher's reader sees only the close (and join frames).
			readDone := make(chan int, 1)
			go func() {
				for {
					if _, _, err := pub.ReadMessage(); err != nil {
						readDone <- closeCode(err)
						return
					}
				}
			}()
			tick := time.NewTicker(2 * time.Millisecond) // the publishing rate
			defer tick.Stop()
			var seq uint64
			msg := make([]byte, 64)
		loop:
			for {
				select {
				case o.code = <-readDone:
					break loop
				case <-tick.C:
					binary.BigEndian.PutUint64(msg, seq)
					if err := pub.WriteMessage(websocket.BinaryMessage, msg); err != nil {
						o.code = <-readDone
						break loop
					}
					seq++
				}
			}
			o.received = seq
			results <- o
		}()
	}
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("traffic did not start")
	}
	time.Sleep(500 * time.Millisecond) // half a second of traffic before the signal

	signalled := time.Now()
	if err := srv.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-srv.Done:
	case <-time.After(spread + drain + 5*time.Second):
		t.Fatalf("server still running %v after SIGTERM", time.Since(signalled))
	}
	exited := time.Since(signalled)
	wg.Wait()
	close(results)
	var delivered uint64
	for o := range results {
		switch {
		case o.err != nil:
			t.Errorf("%s: %v", o.who, o.err)
		case o.code != websocket.CloseGoingAway:
			t.Errorf("%s: close code %d, want 1001", o.who, o.code)
		}
		if o.who[0] == 'r' {
			delivered += o.received
		}
	}
	t.Logf("exited %v after SIGTERM; %d messages delivered in order before the 1001s", exited.Round(time.Millisecond), delivered)
	if exited > spread+drain+time.Second {
		t.Errorf("exit took %v, drain time %v and timeout %v", exited, spread, drain)
	}
	if code := srv.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d", code)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("still accepting connections after exit")
	}
}
