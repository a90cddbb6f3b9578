package server_test

// The close of a slow consumer (SPEC 1.6, DESIGN "Fan-out": "Closing with a
// code stops data, queues the close frame, and closes once it is flushed or
// a short bound passes; no partial frame is ever sent").

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/internal/poll"
	"github.com/mles/mles/server"
)

// TestSlowConsumerCloseFrame: a member stops reading while a publisher
// floods it until the server closes it as a slow consumer. The member then
// reads again at once: it must get only whole, valid frames, contiguous
// from the first message, then a close frame 1008 "slow consumer", then
// the end of the connection. Twenty rounds per mode and reactor count:
// whether output queued at the close is lost depends on the room in the
// kernel's send buffer at that moment, so one round alone proves little.
func TestSlowConsumerCloseFrame(t *testing.T) {
	const (
		rounds     = 20
		size       = 16 << 10
		perWrite   = 16      // 256 KiB per publisher write
		floodFirst = 4 << 20 // about what the sockets of a stalled reader hold, and more
		maxFlood   = 900     // messages: stay below the 1024-slot ring
	)
	forModesReactors(t, func(t *testing.T, m mode, reactors int) {
		// The four servers run side by side: most of a round is the grace
		// period, and the rounds of one server run one after the other.
		t.Parallel()
		ts := startServer(t, m, func(o *server.Options) {
			o.Reactors = reactors
			o.History = 1
			o.MaxPending = 64 << 10
			o.SlowGrace = 200 * time.Millisecond
			o.CloseLinger = 15 * time.Second // room for a loaded machine: the reader reads at once
		})
		batch := make([][]byte, 0, perWrite)
		start, flooded := time.Now(), 0
		for round := range rounds {
			ch := fmt.Sprintf("slow%02d", round)
			pub := ts.join(t, "pub", ch)
			slow, err := ts.joinErr("sloth", ch, dialConfig{rcvBuf: 4096})
			if err != nil {
				t.Fatalf("round %d: join: %v", round, err)
			}
			t.Cleanup(func() { slow.Close() })
			poll.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
				if n := ts.Stats().Members; n != 2 {
					return fmt.Errorf("round %d: Stats().Members = %d, want 2", round, n)
				}
				return nil
			})
			slowBefore := ts.Stats().SlowConsumers

			// Flood until the server gives up on the stalled member.
			sent := 0
			deadline := time.Now().Add(20 * time.Second)
			for ts.Stats().SlowConsumers == slowBefore {
				if time.Now().After(deadline) {
					t.Fatalf("round %d: not closed as a slow consumer after %d messages of %d bytes", round, sent, size)
				}
				if sent*size >= floodFirst {
					time.Sleep(20 * time.Millisecond) // pacing while the grace period runs
				}
				if sent >= maxFlood {
					continue
				}
				batch = batch[:0]
				for k := range perWrite {
					batch = append(batch, seqPayload(0, uint32(sent+k), size))
				}
				if err := pub.sendBatch(ws.OpBinary, batch); err != nil {
					t.Fatalf("round %d: publish: %v", round, err)
				}
				sent += perWrite
			}

			// Read again at once: whole frames, then 1008, then EOF.
			if err := readUntilSlowClose(slow, size, sent); err != nil {
				t.Fatalf("round %d (%d messages of %d bytes published): %v", round, sent, size, err)
			}
			pub.Close()
			slow.Close()
			flooded += sent
		}
		t.Logf("%d rounds in %v, %d messages published per round on average",
			rounds, time.Since(start).Round(time.Millisecond), flooded/rounds)
	})
}

// readUntilSlowClose reads a slow consumer's stream to its end: data
// frames seqPayload(0, 0..n-1, size) in order (stored join frames
// skipped), then a close frame 1008 "slow consumer", then EOF.
func readUntilSlowClose(c *rawClient, size, published int) error {
	buf := make([]byte, size)
	next := 0
	frames := 0
	for {
		h, p, err := c.frameInto(buf, 10*time.Second)
		if err != nil {
			if errors.Is(err, errMidFrame) {
				return fmt.Errorf("stream cut mid-frame after %d whole frames (messages 0..%d): %v", frames, next-1, err)
			}
			return fmt.Errorf("no close frame after %d whole frames (messages 0..%d): %v", frames, next-1, err)
		}
		frames++
		switch h.OpCode {
		case ws.OpText:
			continue // pub's stored join frame (history 1)
		case ws.OpBinary:
			seq, err := checkSeqFast(p, size)
			if err != nil {
				return fmt.Errorf("frame %d: %v", frames, err)
			}
			if int(seq) != next {
				return fmt.Errorf("gap: after messages 0..%d got message %d", next-1, seq)
			}
			if !h.Fin {
				return fmt.Errorf("message %d: fragmented delivery", seq)
			}
			next++
			if next > published {
				return fmt.Errorf("got message %d, only %d were published", seq, published)
			}
		case ws.OpPing, ws.OpPong:
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(p)
			if code != ws.StatusPolicyViolation || reason != "slow consumer" {
				return fmt.Errorf("close %d %q after messages 0..%d, want 1008 \"slow consumer\"", code, reason, next-1)
			}
			if err := c.awaitEOF(10 * time.Second); err != nil {
				return fmt.Errorf("after the close frame (messages 0..%d before it): %v", next-1, err)
			}
			return nil
		default:
			return fmt.Errorf("unexpected frame opcode %v", h.OpCode)
		}
	}
}

// TestPongAfterSlicedFrame: a ping that arrives while a large frame is
// going out to its sender in slices is answered after that frame, never in
// the middle of it (a control frame may sit between the frames of a
// message, not inside one: RFC 6455 section 5.4).
func TestPongAfterSlicedFrame(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, func(o *server.Options) {
			o.MaxPending = 64 << 10
			o.SlowGrace = time.Minute
		})
		const ch, size = "sliced", 8 << 20 // far more than the socket buffers take
		pub := ts.join(t, "pub", ch)
		sub, err := ts.joinErr("sub", ch, dialConfig{rcvBuf: 4096})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sub.Close() })
		ts.waitMembers(t, 2)
		payload := bytes.Repeat([]byte{0x5A}, size)
		pub.mustSend(t, ws.OpBinary, payload)
		// Read up to the large frame's header: once it is here, the frame
		// is going out in slices, paused above MaxPending (8 MiB cannot
		// pass while sub reads nothing more).
		var h ws.Header
		for {
			_ = sub.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			h, err = ws.ReadHeader(sub.br)
			if err != nil {
				t.Fatalf("sub: waiting for the large frame: %v", err)
			}
			if h.OpCode == ws.OpBinary {
				break
			}
			if _, err := io.CopyN(io.Discard, sub.br, h.Length); err != nil { // pub's stored join frame
				t.Fatal(err)
			}
		}
		if h.Length != size {
			t.Fatalf("sub: frame of %d bytes, want %d", h.Length, size)
		}
		sub.mustSend(t, ws.OpPing, []byte("sub"))
		got := make([]byte, size)
		_ = sub.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.ReadFull(sub.br, got); err != nil {
			t.Fatalf("sub: reading the large frame: %v", err)
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("sub: the %d-byte message arrived damaged: a frame inside it?", size)
		}
		f, err := sub.nextFrame(30 * time.Second)
		if err != nil {
			t.Fatalf("sub: waiting for the pong after the frame: %v", err)
		}
		if f.Header.OpCode != ws.OpPong || string(f.Payload) != "sub" {
			t.Fatalf("sub: after the frame %v %q, want the pong \"sub\"", f.Header.OpCode, f.Payload)
		}
	})
}
