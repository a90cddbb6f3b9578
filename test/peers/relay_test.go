package peers

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mles/mles/internal/poll"
)

// Traffic of TestMeshThree and TestChainThree.
const (
	relayChannel   = "numbers"
	membersPerSrv  = 2
	relayMessages  = 1000                  // numbered messages per member
	relayPerTick   = 5                     // messages a member sends per tick:
	relayTick      = 10 * time.Millisecond // 500 a second, 1,000 in about 2 s
	peeredDeadline = 60 * time.Second      // peer sessions up after the first joins
	relayDeadline  = 90 * time.Second      // every message everywhere after the first send
	probeEvery     = 250 * time.Millisecond
)

// TestMeshThree: three servers that all peer each other (a full mesh, the
// topology where a naive relay loops), two members on each. Every member
// sends 1,000 numbered messages; every member receives every other
// member's messages exactly once, in each sender's order, and none of its
// own.
func TestMeshThree(t *testing.T) {
	bin := mlesBin(t, "--peer", "--server-id")
	servers := startTopology(t, bin, map[string][]string{
		"A": {"B", "C"},
		"B": {"A", "C"},
		"C": {"A", "B"},
	})
	relay(t, servers)
}

// TestChainThree: A-B-C with A and C peering B and B peering nobody:
// messages between A and C cross B, which relays between two peer
// sessions. The same exactly-once checks as the mesh.
func TestChainThree(t *testing.T) {
	bin := mlesBin(t, "--peer", "--server-id")
	servers := startTopology(t, bin, map[string][]string{
		"A": {"B"},
		"B": nil,
		"C": {"B"},
	})
	relay(t, servers)
}

// relay runs the exactly-once traffic over servers and returns the
// members.
func relay(t *testing.T, servers []*server) []*member {
	var members []*member
	for _, s := range servers {
		for i := 1; i <= membersPerSrv; i++ {
			members = append(members, newMember(t, s, fmt.Sprintf("%s%d", s.name, i), relayChannel))
		}
	}
	waitPeered(t, servers, members)

	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(members))
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.pace(relayMessages, relayPerTick, relayTick)
		}()
	}
	wg.Wait() // bounded: every write has a deadline
	sending := time.Since(start)
	for _, err := range errs {
		if err != nil {
			t.Fatalf("sending: %v\n%v", err, anomalies(members))
		}
	}

	all := func(*member) []expect {
		var e []expect
		for _, o := range members {
			e = append(e, expect{o.uid, 1, relayMessages})
		}
		return e
	}
	poll.CheckFor(t, relayDeadline, 20*time.Millisecond, func() error { return lacking(members, all) })
	elapsed := time.Since(start)
	fence(t, members)

	if err := anomalies(members); err != nil {
		t.Error(err)
	}
	for _, m := range members {
		if d := m.dropErrs(); len(d) > 0 {
			t.Errorf("%s on %s: connection dropped: %v", m.uid, m.srv.name, d)
		}
		l := m.last()
		for _, o := range members {
			if o == m {
				if got := l.numbers(m.uid); len(got) > 0 {
					t.Errorf("%s received %d of its own messages: %s", m.uid, len(got), ranges(got))
				}
				continue
			}
			if got := l.numbers(o.uid); len(got) != relayMessages {
				t.Errorf("%s received %d distinct messages of %s, want %d (numbers %s)", m.uid, len(got), o.uid, relayMessages, ranges(got))
			}
		}
	}
	checkNoPanic(t, servers...)
	deliveries := len(members) * (len(members) - 1) * relayMessages
	t.Logf("%d servers, %d members, %d messages each: sent in %v (%.0f msg/s), all %d deliveries in %v (%.0f deliveries/s)",
		len(servers), len(members), relayMessages, sending.Round(time.Millisecond),
		float64(len(members)*relayMessages)/sending.Seconds(), deliveries, elapsed.Round(time.Millisecond),
		float64(deliveries)/elapsed.Seconds())
	return members
}

// waitPeered waits until the servers relay each other's traffic on the
// members' channel: a probe member on each server ("probe-<server>", a uid
// of its own) sends a numbered probe every probeEvery until every member
// of every other server received one. The probes then leave; members
// ignore them when counting (their own sender names).
func waitPeered(t *testing.T, servers []*server, members []*member) {
	t.Helper()
	start := time.Now()
	channel := members[0].channel
	probes := make([]*member, len(servers))
	for i, s := range servers {
		probes[i] = newMember(t, s, "probe-"+s.name, channel)
	}
	var lastSend time.Time
	poll.CheckFor(t, peeredDeadline, 20*time.Millisecond, func() error {
		var lack []string
		resend := time.Since(lastSend) >= probeEvery
		for _, p := range probes {
			reached := true
			for _, m := range members {
				if m.srv != p.srv && !m.last().has(p.uid) {
					lack = append(lack, fmt.Sprintf("%s on %s has no probe from %s", m.uid, m.srv.name, p.srv.name))
					reached = false
				}
			}
			if !reached && resend {
				if err := p.sendNext(); err != nil {
					return fmt.Errorf("probe of %s: %w", p.srv.name, err)
				}
			}
		}
		if resend {
			lastSend = time.Now()
		}
		if len(lack) > 0 {
			return fmt.Errorf("peer sessions not relaying yet (%d probes sent): %v", sentProbes(probes), lack)
		}
		return nil
	})
	for _, p := range probes {
		p.close()
	}
	t.Logf("peers relaying after %v (%d probes)", time.Since(start).Round(time.Millisecond), sentProbes(probes))
}

func sentProbes(probes []*member) int {
	n := 0
	for _, p := range probes {
		n += int(p.sent.Load())
	}
	return n
}

// fence sends every member's fence and waits until every member received
// every other member's: anything still in flight or circulating has then
// had the time of a full round to show up in the logs.
func fence(t *testing.T, members []*member) {
	t.Helper()
	want := map[*member]int{}
	for _, m := range members {
		if err := m.sendFence(); err != nil {
			t.Fatal(err)
		}
		want[m] = m.next
	}
	fences := func(*member) []expect {
		var e []expect
		for _, o := range members {
			e = append(e, expect{o.uid + fenceTag, want[o], want[o]})
		}
		return e
	}
	poll.CheckFor(t, relayDeadline, 20*time.Millisecond, func() error { return lacking(members, fences) })
}
