package server_test

// A joiner that falls behind while it replays history (SPEC 1.4, 1.6): if
// the ring laps it before it caught up, it has lost messages for good and
// must be closed as a slow consumer, never skip ahead silently.

import (
	"errors"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/server"
)

// TestJoinerLappedInReplay: a joiner with a tiny receive buffer joins a
// channel with a large history and does not read, so its replay pauses
// above MaxPending. More than a ring's worth of live messages follow, then
// the joiner reads. What it receives must be contiguous (history, then
// live, numbered consecutively): either all of it, or a contiguous prefix
// followed by a close 1008 "slow consumer". A jump over live messages is
// silent loss.
func TestJoinerLappedInReplay(t *testing.T) {
	const (
		history  = 512 // Validate makes the ring max(1024, 2*history) = 1024 slots
		ringSize = 1024
		// 8 MiB of history: far more than the sockets hold (the server
		// socket alone takes up to tcp_wmem max, 4 MiB, on these machines)
		size     = 16 << 10
		live     = ringSize + 64 // more than a ring's worth
		total    = history + live
		perWrite = 32
	)
	forModesReactors(t, func(t *testing.T, m mode, reactors int) {
		ts := startServer(t, m, func(o *server.Options) {
			o.Reactors = reactors
			o.History = history
			o.MaxPending = 16 << 10
			o.SlowGrace = time.Minute // only a lap may close the joiner
			// The joiner reads only after the whole burst: a close decided
			// during the burst must still reach it behind its queued output.
			o.CloseLinger = 30 * time.Second
		})
		const ch = "lap"
		pub := ts.joinSeq(t, "pub", ch)
		// publish sends messages [from, to) numbered by seqPayload, perWrite
		// frames per write, and waits until the server has them all.
		publish := func(from, to int) {
			t.Helper()
			for i := from; i < to; i += perWrite {
				var batch [][]byte
				for k := i; k < min(i+perWrite, to); k++ {
					batch = append(batch, seqPayload(0, uint32(k), size))
				}
				if err := pub.sendBatch(ws.OpBinary, batch); err != nil {
					t.Fatalf("publish %d..: %v", i, err)
				}
			}
			pub.mustBarrier(t)
		}
		publish(0, history)

		j, err := ts.joinErr("joiner", ch, dialConfig{rcvBuf: 4096})
		if err != nil {
			t.Fatalf("joiner: %v", err)
		}
		t.Cleanup(func() { j.Close() })
		ts.waitMembers(t, 2)
		publish(history, total)

		next := 0 // the next message number due
		for next < total {
			msg, err := j.recv(15 * time.Second)
			var ce *closeError
			if errors.As(err, &ce) {
				if ce.code != ws.StatusPolicyViolation || ce.reason != "slow consumer" {
					t.Fatalf("joiner: close %d %q after %d contiguous messages, want 1008 \"slow consumer\"", ce.code, ce.reason, next)
				}
				t.Logf("joiner: %d contiguous messages (history %d), then close 1008 %q", next, history, ce.reason)
				if err := j.awaitEOF(10 * time.Second); err != nil {
					t.Fatalf("joiner after its close frame: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("joiner: after %d contiguous messages of %d, no close frame: %v", next, total, err)
			}
			if isJoinFrame(msg) {
				continue
			}
			_, seq, ok := parseSeq(msg.data)
			if !ok || len(msg.data) != size {
				t.Fatalf("joiner: corrupt message of %d bytes after %d contiguous messages", len(msg.data), next)
			}
			if int(seq) != next {
				t.Fatalf("joiner: gap: after %d contiguous messages (0..%d) got message %d: %d messages skipped without a close",
					next, next-1, seq, int(seq)-next)
			}
			next++
		}
		t.Logf("joiner: got all %d messages", total)
	})
}
