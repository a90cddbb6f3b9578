package server_test

// Graceful shutdown under load (SPEC 5: SIGTERM closes with 1001 within the
// drain timeout; DESIGN "Fan-out": closing stops data only after what was
// accepted is flushed, never mid-frame).

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/server"
)

// drainResult is what one reader saw up to the end of its connection.
type drainResult struct {
	got    int // data messages received in order
	code   ws.StatusCode
	reason string
	err    error
}

// readToClose reads data frames seqPayload(0, 0..n-1, size) in order at
// full speed (stored join frames skipped) until a close frame, then
// expects the server to end the connection.
func readToClose(c *rawClient, size, n int) drainResult {
	var r drainResult
	buf := make([]byte, size)
	for {
		h, p, err := c.frameInto(buf, 30*time.Second)
		if err != nil {
			r.err = fmt.Errorf("after messages 0..%d, no close frame: %w", r.got-1, err)
			return r
		}
		switch h.OpCode {
		case ws.OpText, ws.OpPing, ws.OpPong:
			continue
		case ws.OpBinary:
			seq, err := checkSeqFast(p, size)
			if err == nil && int(seq) != r.got {
				err = fmt.Errorf("gap: after messages 0..%d got message %d", r.got-1, seq)
			}
			if err == nil && r.got >= n {
				err = fmt.Errorf("message %d after all %d", seq, n)
			}
			if err != nil {
				r.err = err
				return r
			}
			r.got++
		case ws.OpClose:
			r.code, r.reason = ws.ParseCloseFrameData(p)
			if err := c.awaitEOF(15 * time.Second); err != nil {
				r.err = fmt.Errorf("after close %d: %w", r.code, err)
			}
			return r
		default:
			r.err = fmt.Errorf("unexpected frame opcode %v", h.OpCode)
			return r
		}
	}
}

// TestShutdownDrainsMembers: a publisher sends 600 messages of 32 KiB
// to 30 members; Shutdown starts as soon as the server has accepted the
// whole burst, and the members read it at full speed, each in its own
// goroutine. Every member must get all 600, in order, then a close 1001,
// and Shutdown must return within DrainTimeout.
//
// The members start reading when the burst is accepted, just before
// Shutdown, so that each has most of the burst (19 MiB) still to receive
// when the shutdown begins. Members that read during the burst keep this
// 2-core machine so busy under -race that the server reads the publisher
// only as fast as they read, and the shutdown would find nothing left to
// drain.
func TestShutdownDrainsMembers(t *testing.T) {
	const (
		readers  = 30
		messages = 600
		size     = 32 << 10
		perWrite = 8
		// Delivering the 576 MB takes 5 to 8 s over TLS under -race on an
		// idle 2-core machine: room for a loaded one.
		drain = 20 * time.Second
	)
	// The burst, as masked frames grouped per write, built once.
	var writes [][]byte
	for i := 0; i < messages; i += perWrite {
		var b bytes.Buffer
		for k := i; k < min(i+perWrite, messages); k++ {
			b.Write(maskedFrame(ws.OpBinary, true, 0, seqPayload(0, uint32(k), size)))
		}
		writes = append(writes, b.Bytes())
	}

	forModesReactors(t, func(t *testing.T, m mode, reactors int) {
		ts := startServer(t, m, func(o *server.Options) {
			o.Reactors = reactors
			o.DrainTimeout = drain
			// Readers that trail the burst for a while are not slow
			// consumers: this test is about the shutdown.
			o.SlowGrace = time.Minute
		})
		const ch = "drain"
		pub := ts.joinSeq(t, "pub", ch)
		rs := make([]*rawClient, readers)
		for i := range rs {
			rs[i] = ts.join(t, fmt.Sprintf("reader%02d", i), ch)
		}
		ts.waitMembers(t, readers+1)

		results := make([]drainResult, readers)
		var wg sync.WaitGroup
		gate := make(chan struct{}) // closed when the burst is accepted
		for i, c := range rs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				results[i] = readToClose(c, size, messages)
			}()
		}

		for i, w := range writes {
			if err := pub.write(w); err != nil {
				t.Fatalf("publish write %d: %v", i, err)
			}
		}
		// The pong comes after the server has published every message
		// before the ping.
		pub.mustBarrier(t)

		close(gate)
		ctx, cancel := context.WithTimeout(context.Background(), 3*drain)
		defer cancel()
		start := time.Now()
		err := ts.Shutdown(ctx)
		elapsed := time.Since(start)
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}

		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatalf("readers still reading 60 s after Shutdown")
		}
		var bad []string
		for i, r := range results {
			switch {
			case r.err != nil:
				bad = append(bad, fmt.Sprintf("reader%02d: %d of %d messages, close %d %q: %v", i, r.got, messages, r.code, r.reason, r.err))
			case r.got != messages || r.code != ws.StatusGoingAway:
				bad = append(bad, fmt.Sprintf("reader%02d: %d of %d messages, then close %d %q (want all, then 1001)", i, r.got, messages, r.code, r.reason))
			}
		}
		t.Logf("Shutdown took %v (DrainTimeout %v); %d of %d readers complete", elapsed.Round(time.Millisecond), drain, readers-len(bad), readers)
		if len(bad) > 0 {
			t.Errorf("%d readers cut off, first: %s", len(bad), strings.Join(bad[:min(5, len(bad))], "; "))
		}
		if elapsed > drain+time.Second {
			t.Errorf("Shutdown took %v, DrainTimeout is %v", elapsed, drain)
		}
	})
}

// TestShutdownStalledMember: at shutdown a member that does not read
// cannot get its backlog; it is declared a slow consumer once three
// quarters of the drain timeout have passed (1008 instead of a 1001 after a
// silent gap), and Shutdown still returns within the drain timeout.
func TestShutdownStalledMember(t *testing.T) {
	const (
		drain    = 2 * time.Second
		messages = 256
		size     = 32 << 10 // 8 MiB in all: more than the socket buffers take
	)
	ts := startServer(t, mode{"plain", false}, func(o *server.Options) {
		o.MaxPending = 64 << 10
		o.SlowGrace = time.Hour // only the shutdown deadline may close it
		o.DrainTimeout = drain
	})
	const ch = "stalled-at-shutdown"
	pub := ts.join(t, "pub", ch)
	stalled, err := ts.joinErr("stalled", ch, dialConfig{rcvBuf: 4096})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stalled.Close() })
	ts.waitMembers(t, 2)
	var b bytes.Buffer
	for k := range messages {
		b.Write(maskedFrame(ws.OpBinary, true, 0, seqPayload(0, uint32(k), size)))
	}
	if err := pub.write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	// The publisher's pong: the server has read every message.
	pub.mustSend(t, ws.OpPing, []byte("sync"))
	for {
		f, err := pub.nextFrame(30 * time.Second)
		if err != nil {
			t.Fatalf("publisher: waiting for its pong: %v", err)
		}
		if f.Header.OpCode == ws.OpPong {
			break
		}
	}
	slowBefore := ts.Stats().SlowConsumers
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*drain)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Logf("Shutdown: %v", err)
	}
	if elapsed := time.Since(start); elapsed > drain+time.Second {
		t.Errorf("Shutdown took %v, DrainTimeout is %v", elapsed, drain)
	}
	if n := ts.Stats().SlowConsumers - slowBefore; n != 1 {
		t.Errorf("%d slow consumers at shutdown, want the stalled member", n)
	}
}
