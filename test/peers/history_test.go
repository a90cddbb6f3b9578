package peers

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mles/mles/internal/poll"
)

// Traffic of the --history-dir tests.
const (
	persistMessages = 500
	crashMax        = 2500 // the kill -9 writer's cap: its whole run fits in --limit 5000
	crashBeforeKill = 750  // it has sent this many (1.5 s of traffic) at the kill
	crashPerTick    = 5    // 500 messages a second
	crashMargin     = time.Second
	historyDeadline = 30 * time.Second
)

// historyArgs are the flags of a server that persists history in dir; a
// short drain so that SIGTERM ends it quickly.
func historyArgs(dir string) []string {
	return []string{"--history-dir", dir, "--drain-time", "500ms"}
}

// TestHistoryDirRestart: with --history-dir, SIGTERM and a restart keep
// every message: a new member of the restarted server gets all 500, in
// order, as history. Then kill -9 mid-traffic and a restart: every message
// written more than a second before the kill is in the history, in order,
// once (only the writer's last ~100 ms may be lost), and the first
// channel's 500 are still there.
func TestHistoryDirRestart(t *testing.T) {
	bin := mlesBin(t, "--history-dir")
	dir := t.TempDir()
	s := newServer(t, bin, "H", historyArgs(dir)...)
	s.start(t)

	// 500 messages, all delivered live to a watcher (so accepted by the
	// server) before the SIGTERM.
	watch := newMember(t, s, "watch", "persist")
	w := newMember(t, s, "writer", "persist")
	if err := w.pace(persistMessages, 10, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	poll.CheckFor(t, historyDeadline, 10*time.Millisecond, func() error {
		return lacking([]*member{watch}, func(*member) []expect { return []expect{{"writer", 1, persistMessages}} })
	})
	watch.close()
	w.close()
	s.stop(t)
	s.start(t)
	checkHistory(t, s, "persist", "writer", persistMessages, persistMessages)

	// kill -9 while the writer sends; each message's send time is when
	// its write returned.
	watch2 := newMember(t, s, "watch2", "crash")
	w2 := newMember(t, s, "writer2", "crash")
	var (
		sentAt  []time.Time // sentAt[n-1]: message n; the sender's until done closes
		sendErr error
		done    = make(chan struct{})
		stop    = make(chan struct{})
	)
	stopSender := sync.OnceFunc(func() { close(stop); <-done })
	go func() {
		defer close(done)
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for w2.next <= crashMax {
			select {
			case <-stop:
				return
			case <-tk.C:
			}
			for i := 0; i < crashPerTick && w2.next <= crashMax; i++ {
				if sendErr = w2.sendNext(); sendErr != nil {
					return
				}
				sentAt = append(sentAt, time.Now())
			}
		}
	}()
	t.Cleanup(stopSender)
	poll.CheckFor(t, historyDeadline, 5*time.Millisecond, func() error {
		select {
		case <-done:
			return fmt.Errorf("the writer stopped early: %v", sendErr)
		default:
		}
		if n := w2.sent.Load(); n < crashBeforeKill {
			return fmt.Errorf("writer2 sent %d of %d", n, crashBeforeKill)
		}
		return nil
	})
	killAt := time.Now()
	s.kill(t)
	stopSender()
	required := 0 // messages sent more than crashMargin before the kill
	for n, at := range sentAt {
		if at.Before(killAt.Add(-crashMargin)) {
			required = n + 1
		}
	}
	watched := watch2.last().numbers("writer2")
	watch2.close()
	w2.close()

	s.start(t)
	got := checkHistory(t, s, "crash", "writer2", required, len(sentAt))
	// What the kill took: how many of the last second, since when, and
	// how many of those the server had already delivered to the watcher
	// (so had taken from the socket).
	var lost []int
	for n := required + 1; n <= len(sentAt); n++ {
		if got.arrival("writer2", n) == 0 {
			lost = append(lost, n)
		}
	}
	delivered := map[int]bool{}
	for _, n := range watched {
		delivered[n] = true
	}
	var lostDelivered int
	for _, n := range lost {
		if delivered[n] {
			lostDelivered++
		}
	}
	window := "none lost"
	if len(lost) > 0 {
		window = fmt.Sprintf("lost %s, the oldest sent %v before the kill; %d of them had been delivered to the watcher",
			ranges(lost), killAt.Sub(sentAt[lost[0]-1]).Round(time.Millisecond), lostDelivered)
	}
	t.Logf("kill -9 after %d messages (%d delivered to a watcher before the kill): the %d sent more than %v before it were all kept; of the last %d, %d lost (%s)",
		len(sentAt), len(watched), required, crashMargin, len(sentAt)-required, len(lost), window)
	checkHistory(t, s, "persist", "writer", persistMessages, persistMessages)
	checkNoPanic(t, s)
}

var readers atomic.Int64

// checkHistory joins a new member to channel on s and requires that its
// history holds sender's messages 1..required, in order, each once, and
// none beyond sent: all before a fence message a second member sends
// after joining (history comes before live traffic). It returns the new
// member's log.
func checkHistory(t *testing.T, s *server, channel, sender string, required, sent int) *connLog {
	t.Helper()
	k := readers.Add(1) // fresh uids: an earlier fence is in the history
	r := newMember(t, s, fmt.Sprintf("reader%d-%s", k, channel), channel)
	f := newMember(t, s, fmt.Sprintf("fence%d-%s", k, channel), channel)
	defer r.close()
	defer f.close()
	if err := f.sendNext(); err != nil {
		t.Fatal(err)
	}
	l := r.last()
	poll.CheckFor(t, historyDeadline, 10*time.Millisecond, func() error {
		if l.arrival(f.uid, 1) == 0 {
			return fmt.Errorf("%s has not got the fence yet; it has %d of %s's messages", r.uid, len(l.numbers(sender)), sender)
		}
		return nil
	})
	fenceAt := l.arrival(f.uid, 1)
	if err := anomalies([]*member{r}); err != nil {
		t.Errorf("history of %q after restart %d: %v", channel, len(s.procs)-1, err)
	}
	if miss := l.missing(sender, 1, required); len(miss) > 0 {
		t.Errorf("history of %q after restart %d lacks %d of %s's messages 1..%d: %s (it has %s)",
			channel, len(s.procs)-1, len(miss), sender, required, ranges(miss), ranges(l.numbers(sender)))
	}
	got := l.numbers(sender)
	if len(got) > 0 && got[len(got)-1] > sent {
		t.Errorf("history of %q holds %s's messages up to %d, but only %d were sent", channel, sender, got[len(got)-1], sent)
	}
	var late []int
	for _, n := range got {
		if l.arrival(sender, n) > fenceAt {
			late = append(late, n)
		}
	}
	if len(late) > 0 {
		t.Errorf("%d of %s's messages arrived after live traffic, not as history: %s", len(late), sender, ranges(late))
	}
	return l
}
