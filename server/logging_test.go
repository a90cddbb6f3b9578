package server_test

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/internal/mlestest"
	"github.com/mles/mles/internal/poll"
	"github.com/mles/mles/server"
)

// TestConnectionLogLines: at info level each connection gives one line when
// it joins and one when it closes (reactor, duration, reason, close code),
// and no line, a duplicate's refusal included, shows a uid or channel name.
func TestConnectionLogLines(t *testing.T) {
	var logs mlestest.LockedBuffer
	ts := startServer(t, modes[1], func(o *server.Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	const uid, channel = "alice-secret-uid", "secret-channel-name"
	a := ts.joinSeq(t, uid, channel)
	dup := ts.join(t, uid, channel) // the same (uid, channel, auth): refused 1008
	dup.expectClose(t, ws.StatusPolicyViolation, shortWait)
	time.Sleep(150 * time.Millisecond) // a measurable duration, not a wait for a condition
	a.mustSend(t, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
	ts.waitConns(t, 0)

	var joined, closed []string
	poll.CheckFor(t, shortWait, 5*time.Millisecond, func() error {
		joined, closed = nil, nil
		for _, l := range strings.Split(logs.String(), "\n") {
			switch {
			case strings.Contains(l, "msg=joined"):
				joined = append(joined, l)
			case strings.Contains(l, "msg=closed"):
				closed = append(closed, l)
			}
		}
		if len(joined) != 1 || len(closed) != 2 {
			return fmt.Errorf("%d joined and %d closed lines, want 1 and 2:\n%s", len(joined), len(closed), logs.String())
		}
		return nil
	})
	for _, want := range []string{"reactor=", "remote=127.0.0.1:", "uid=", "channel="} {
		if !strings.Contains(joined[0], want) {
			t.Errorf("joined line %q lacks %s", joined[0], want)
		}
	}
	var member string
	for _, l := range closed {
		if strings.Contains(l, "reason=\"client close\"") {
			member = l
		}
	}
	for _, want := range []string{"reactor=", "code=1000", "duration="} {
		if !strings.Contains(member, want) {
			t.Errorf("the member's closed line %q lacks %s (lines %q)", member, want, closed)
		}
	}
	if strings.Contains(member, "duration=0s") {
		t.Errorf("the member's closed line %q has no duration", member)
	}
	for _, secret := range []string{uid, channel} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log shows %q:\n%s", secret, logs.String())
		}
	}
}
