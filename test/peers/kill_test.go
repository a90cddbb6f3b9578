package peers

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mles/mles/internal/poll"
)

// Traffic of TestKillRestartPeer: every member sends up to killFirstTarget
// while the victim is killed and restarted, then up to killFinalTarget.
// 6 members x 600 messages, with joins and probes, stay under --limit 5000,
// so the refilled history holds everything.
const (
	killPerTick     = 2                     // messages a member sends per tick:
	killTick        = 10 * time.Millisecond // 200 a second
	killBefore      = 100                   // every member sent this many when the victim is killed
	killDown        = 100                   // survivors send this many more while it is down
	killFirstTarget = 300
	killFinalTarget = 600
	killPhase       = 60 * time.Second // deadline of each phase
)

// TestKillRestartPeer: a mesh of three with traffic from every member; one
// server is killed with SIGKILL mid-traffic and restarted on the same port
// without any history. Its members see the drop, stop sending, rejoin once
// it is back and go on numbering where they stopped. The restarted server
// is refilled from its peers: each member's latest connection (a rejoined
// one through history and live traffic) ends up holding every message of
// the surviving servers' members and every message the victim's members
// sent after rejoining; no connection ever gets a message twice or out of
// its sender's order. Messages the victim took in its last instant are not
// required.
func TestKillRestartPeer(t *testing.T) {
	bin := mlesBin(t, "--peer", "--server-id")
	servers := startTopology(t, bin, map[string][]string{
		"A": {"B", "C"},
		"B": {"A", "C"},
		"C": {"A", "B"},
	})
	victim := servers[2]
	var members, survivors, victims []*member
	for _, s := range servers {
		for i := 1; i <= membersPerSrv; i++ {
			m := newMember(t, s, fmt.Sprintf("%s%d", s.name, i), relayChannel)
			members = append(members, m)
			if s == victim {
				victims = append(victims, m)
			} else {
				survivors = append(survivors, m)
			}
		}
	}
	waitPeered(t, servers, members)

	// The pumps: one goroutine per member sends while its number is at
	// most target; a victim's member rejoins after a drop.
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	var target atomic.Int64
	target.Store(killFirstTarget)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	stopPumps := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopPumps) // before the members' cleanups close them
	for _, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.pump(ctx, &target, stop, m.srv == victim); err != nil {
				cancel(err)
			}
		}()
	}
	phase := func(what string, cond func() error) {
		t.Helper()
		if err := poll.Until(ctx, killPhase, 10*time.Millisecond, cond); err != nil {
			t.Fatalf("%s: %v (pumps: %v)\n%v", what, err, context.Cause(ctx), anomalies(members))
		}
	}
	sentAtLeast := func(ms []*member, n func(*member) int64) func() error {
		return func() error {
			for _, m := range ms {
				if got, want := m.sent.Load(), n(m); got < want {
					return fmt.Errorf("%s sent %d, waiting for %d", m.uid, got, want)
				}
			}
			return nil
		}
	}

	start := time.Now()
	phase("traffic before the kill", sentAtLeast(members, func(*member) int64 { return killBefore }))
	atKill := map[*member]int64{}
	for _, m := range members {
		atKill[m] = m.sent.Load()
	}
	victim.kill(t)
	killedAt := time.Now()
	phase("the victim's members seeing the drop", func() error {
		for _, m := range victims {
			if len(m.dropErrs()) == 0 {
				return fmt.Errorf("%s still connected to the killed %s", m.uid, victim.name)
			}
		}
		return nil
	})
	phase("survivors' traffic while the victim is down", sentAtLeast(survivors, func(m *member) int64 {
		return min(atKill[m]+killDown, killFirstTarget)
	}))
	victim.start(t)
	restartedAt := time.Now()
	phase("the victim's members rejoining", func() error {
		for _, m := range victims {
			if n := len(m.connLogs()); n < 2 {
				return fmt.Errorf("%s not rejoined (%d connections)", m.uid, n)
			}
		}
		return nil
	})
	target.Store(killFinalTarget)
	phase("traffic after the restart", sentAtLeast(members, func(*member) int64 { return killFinalTarget }))
	stopPumps()
	if err := context.Cause(ctx); err != nil {
		t.Fatalf("pump: %v\n%v", err, anomalies(members))
	}

	// What every member's latest connection must hold.
	resume := map[*member]int{} // first number a victim's member sent after rejoining
	for _, m := range victims {
		resume[m] = m.connLogs()[1].ownFrom
	}
	want := func(*member) []expect {
		var e []expect
		for _, o := range survivors {
			e = append(e, expect{o.uid, 1, int(o.sent.Load())})
		}
		for _, o := range victims {
			e = append(e, expect{o.uid, resume[o], int(o.sent.Load())})
		}
		return e
	}
	poll.CheckFor(t, relayDeadline, 20*time.Millisecond, func() error { return lacking(members, want) })
	complete := time.Since(restartedAt)
	fence(t, members)

	if err := anomalies(members); err != nil {
		t.Error(err)
	}
	for _, m := range survivors {
		if d := m.dropErrs(); len(d) > 0 {
			t.Errorf("%s on surviving %s: connection dropped: %v", m.uid, m.srv.name, d)
		}
	}
	for _, m := range victims {
		if d, n := m.dropErrs(), len(m.connLogs()); len(d) != 1 || n != 2 {
			t.Errorf("%s on %s: %d drops (%v) and %d connections, want the kill's one drop and one rejoin", m.uid, victim.name, len(d), d, n)
		}
	}
	checkNoPanic(t, servers...)

	// The victim's members' messages from before the kill are not
	// required (the kill may take some); say what became of them.
	var lost []string
	for _, v := range victims {
		sentBefore := resume[v] - 1
		for _, m := range survivors {
			if miss := m.last().missing(v.uid, 1, sentBefore); len(miss) > 0 {
				lost = append(lost, fmt.Sprintf("%s lacks %d of %s's %d pre-kill messages (%s)", m.uid, len(miss), v.uid, sentBefore, ranges(miss)))
			}
		}
	}
	if len(lost) == 0 {
		lost = []string{"none"}
	}
	t.Logf("killed %s after %v (victims had sent %d and %d); restarted after %v down; everything everywhere %v after the restart; victims' pre-kill messages lost: %s",
		victim.name, killedAt.Sub(start).Round(time.Millisecond), atKill[victims[0]], atKill[victims[1]],
		restartedAt.Sub(killedAt).Round(time.Millisecond), complete.Round(time.Millisecond), strings.Join(lost, "; "))
}

// pump sends the member's messages at a steady pace while their number is
// at most target, until stop. After a drop, with rejoin it stops sending,
// rejoins (retrying until the server is back) and goes on numbering; it
// returns an error for a drop without rejoin or a rejoin that never
// succeeds.
func (m *member) pump(ctx context.Context, target *atomic.Int64, stop <-chan struct{}, rejoin bool) error {
	tk := time.NewTicker(killTick)
	defer tk.Stop()
	for {
		select {
		case <-stop:
			return nil
		case <-ctx.Done():
			return nil
		case <-tk.C:
		}
		c, dead := m.current()
		select {
		case <-dead:
			if !rejoin {
				return fmt.Errorf("%s: connection to %s dropped: %v", m.uid, m.srv.name, m.dropErrs())
			}
			if err := poll.Until(ctx, killPhase, 50*time.Millisecond, m.join); err != nil {
				return fmt.Errorf("%s rejoining %s: %w", m.uid, m.srv.name, err)
			}
			continue
		default:
		}
		for i := 0; i < killPerTick && int64(m.next) <= target.Load(); i++ {
			if err := m.sendNext(); err != nil {
				if !rejoin {
					return err
				}
				c.Close() // its reader ends, and the next tick rejoins
				break
			}
		}
	}
}
