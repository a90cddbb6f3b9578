package server_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/internal/poll"
	"github.com/mles/mles/server"
)

// TestIdleChannelSweep: a channel without members keeps its history
// until it has been idle for ChannelIdle (30 days by default), then it is
// dropped; a channel with a member is never dropped.
func TestIdleChannelSweep(t *testing.T) {
	const idle = 400 * time.Millisecond
	ts := startServer(t, modes[1], func(o *server.Options) { o.ChannelIdle = idle })

	// "kept" has a member for the whole test; "gone" is joined and left.
	keeper := ts.join(t, "keeper", "kept")
	gone := ts.join(t, "alice", "gone")
	gone.mustSend(t, ws.OpText, []byte("stored"))
	ts.waitMembers(t, 2)
	if got := ts.Stats().Channels; got != 2 {
		t.Fatalf("Channels = %d, want 2", got)
	}
	// The history outlives the member: a joiner right after the leave gets it.
	_ = gone.Close()
	ts.waitMembers(t, 1)
	bob := ts.join(t, "bob", "gone")
	expectJoinFrame(t, bob.mustRecv(t), "alice", "gone")
	bob.expectMsg(t, ws.OpText, "stored")
	// The channel's idle time starts when bob leaves, which is after this
	// instant: measured from here, the drop can never seem early (measured
	// from when the test saw the leave, it did by a poll interval).
	left := time.Now()
	_ = bob.Close()
	ts.waitMembers(t, 1)

	poll.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if got := ts.Stats().Channels; got != 1 {
			return fmt.Errorf("Channels = %d, want 1", got)
		}
		return nil
	})
	if waited := time.Since(left); waited < idle {
		t.Errorf("channel dropped after %v, before ChannelIdle %v", waited, idle)
	}
	// A new joiner of the dropped channel starts with no history: the
	// first thing it gets is erin's message, sent after it joined, not
	// alice's or bob's join frames or "stored" (live members get no join
	// frames; those are history).
	carol := ts.join(t, "carol", "gone")
	ts.waitMembers(t, 2)
	erin := ts.join(t, "erin", "gone")
	ts.waitMembers(t, 3)
	erin.mustSend(t, ws.OpText, []byte("after the drop"))
	carol.expectMsg(t, ws.OpText, "after the drop")
	// erin's history is carol's join frame only.
	expectJoinFrame(t, erin.mustRecv(t), "carol", "gone")
	// The member of "kept" is still served.
	dave := ts.join(t, "dave", "kept")
	expectJoinFrame(t, dave.mustRecv(t), "keeper", "kept")
	ts.waitMembers(t, 4)
	dave.mustSend(t, ws.OpText, []byte("still here"))
	keeper.expectMsg(t, ws.OpText, "still here")
}
