package server_test

// Helpers for the fan-out edge tests (byte caps, lapped joiners, slow
// consumer close, large messages, shutdown drain): the mode x reactor
// matrix, batched publishing in one write, a ping/pong barrier, and a
// frame reader that reuses its buffer so readers keep up at full speed
// under -race.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// reactorCounts are the event-loop counts the fan-out tests run with: one
// loop (publisher and subscribers share it, drains run after the
// publisher's callback) and two (drains run on another loop, concurrently).
var reactorCounts = []int{1, 2}

// forModesReactors runs f in TLS and plain mode, each with 1 and 2
// reactors, as subtests named "tls/r1", "tls/r2", "plain/r1", "plain/r2".
func forModesReactors(t *testing.T, f func(t *testing.T, m mode, reactors int)) {
	for _, m := range modes {
		for _, r := range reactorCounts {
			t.Run(fmt.Sprintf("%s/r%d", m.name, r), func(t *testing.T) { f(t, m, r) })
		}
	}
}

// sendBatch writes the frames (masked, final, opcode op) in one Write, so
// the server reads them together and publishes them in one callback.
func (c *rawClient) sendBatch(op ws.OpCode, payloads [][]byte) error {
	var b bytes.Buffer
	for _, p := range payloads {
		b.Write(maskedFrame(op, true, 0, p))
	}
	return c.write(b.Bytes())
}

// barrier sends a ping and waits for its pong. The server handles one
// client's frames in order and answers a ping after publishing every
// message before it, so the pong proves all of them are in the ring. Data
// frames read meanwhile are discarded and counted in skipped: use it on a
// connection that expects none (a publisher alone, or whose deliveries do
// not matter).
func (c *rawClient) barrier(d time.Duration) (skipped int, err error) {
	var tag [8]byte
	binary.BigEndian.PutUint64(tag[:], uint64(time.Now().UnixNano()))
	if err := c.send(ws.OpPing, tag[:]); err != nil {
		return 0, fmt.Errorf("send ping: %w", err)
	}
	deadline := time.Now().Add(d)
	for {
		f, err := c.nextFrame(time.Until(deadline))
		if err != nil {
			return skipped, fmt.Errorf("waiting for pong: %w", err)
		}
		switch f.Header.OpCode {
		case ws.OpPong:
			if bytes.Equal(f.Payload, tag[:]) {
				return skipped, nil
			}
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(f.Payload)
			return skipped, fmt.Errorf("waiting for pong: %w", &closeError{code, reason})
		case ws.OpText, ws.OpBinary:
			skipped++
		}
	}
}

func (c *rawClient) mustBarrier(t testing.TB) {
	t.Helper()
	if _, err := c.barrier(30 * time.Second); err != nil {
		t.Fatalf("ping/pong barrier: %v", err)
	}
}

// errMidFrame marks a stream that ended inside a frame.
var errMidFrame = errors.New("connection ended mid-frame")

// frameInto reads one server frame into buf (grown when too small) and
// returns its header and payload, which aliases buf. It allocates nothing
// per frame, so a reader keeps up with a flood. An EOF inside a frame
// (header or payload) comes back wrapped in errMidFrame; an EOF before a
// frame is io.EOF itself.
func (c *rawClient) frameInto(buf []byte, d time.Duration) (ws.Header, []byte, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	if _, err := c.br.Peek(1); err != nil {
		return ws.Header{}, buf, err
	}
	h, err := ws.ReadHeader(c.br)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return h, buf, fmt.Errorf("%w: in a frame header: %v", errMidFrame, err)
		}
		return h, buf, err
	}
	if h.Masked {
		return h, buf, errors.New("server sent a masked frame")
	}
	if h.Length > 64<<20 {
		return h, buf, fmt.Errorf("server frame of %d bytes", h.Length)
	}
	if int64(cap(buf)) < h.Length {
		buf = make([]byte, h.Length)
	}
	p := buf[:h.Length]
	if n, err := io.ReadFull(c.br, p); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return h, p, fmt.Errorf("%w: %d of %d payload bytes (%v frame): %v", errMidFrame, n, h.Length, h.OpCode, err)
		}
		return h, p, err
	}
	return h, p, nil
}

// checkSeqFast checks a seqPayload(0, seq, size) payload by its length,
// its sequence number and its last byte only: a full byte check of
// hundreds of megabytes would slow the readers under -race.
func checkSeqFast(p []byte, size int) (uint32, error) {
	if len(p) != size {
		return 0, fmt.Errorf("payload of %d bytes, want %d", len(p), size)
	}
	seq := binary.BigEndian.Uint32(p[1:5])
	if p[0] != 0 || p[size-1] != byte(seq)+byte(size-1) {
		return seq, fmt.Errorf("corrupt payload of seq %d", seq)
	}
	return seq, nil
}
