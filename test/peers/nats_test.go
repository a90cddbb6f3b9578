package peers

// Servers on a NATS cluster (SPEC 6, issue 14): three mles processes, each
// connected to a different node of a real 3-node nats-server cluster with
// JetStream (internal/natstest), the stream replicated on all three.

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mles/mles/internal/natstest"
	"github.com/mles/mles/internal/poll"
)

// startOnCluster starts servers A, B, C, server i on NATS node i only (it
// learns the other nodes from the cluster).
func startOnCluster(t *testing.T, bin string, nodes []*natstest.Proc) []*server {
	t.Helper()
	var servers []*server
	for i, n := range nodes {
		name := string(rune('A' + i))
		s := newServer(t, bin, name, "--server-id", name, "--nats", n.URL(), "--nats-replicas", "3")
		s.start(t)
		servers = append(servers, s)
	}
	return servers
}

// TestNATSClusterThree: two members on each server send 1,000 numbered
// messages each: every member gets every other member's exactly once, in
// each sender's order, none of its own, and all of them in one order.
func TestNATSClusterThree(t *testing.T) {
	bin := mlesBin(t, "--nats", "--nats-replicas")
	servers := startOnCluster(t, bin, natstest.Cluster(t, 3))
	members := relay(t, servers)
	checkOneOrder(t, members)
}

// TestNATSKillServer: a server is killed (SIGKILL); its members reconnect
// to another server and get the channel's history there, the whole of it
// (the stream's, in its order: the order every other member saw), then
// live traffic with everybody.
func TestNATSKillServer(t *testing.T) {
	bin := mlesBin(t, "--nats", "--nats-replicas")
	servers := startOnCluster(t, bin, natstest.Cluster(t, 3))
	var members []*member
	for _, s := range servers {
		for i := 1; i <= membersPerSrv; i++ {
			members = append(members, newMember(t, s, fmt.Sprintf("%s%d", s.name, i), relayChannel))
		}
	}
	waitPeered(t, servers, members)
	const before, after = 200, 100
	sendAll(t, members, before)
	everyOther := func(n int) func(*member) []expect {
		return func(m *member) []expect {
			var e []expect
			for _, o := range members {
				e = append(e, expect{o.uid, 1, n})
			}
			return e
		}
	}
	poll.CheckFor(t, relayDeadline, 20*time.Millisecond, func() error { return lacking(members, everyOther(before)) })

	victim := servers[2]
	victim.kill(t)
	// The victim's members come back on the other servers, as new
	// connections (uids of their own, so that their old messages in the
	// history are not taken for echoes).
	var survivors, back []*member
	for _, m := range members {
		if m.srv != victim {
			survivors = append(survivors, m)
			continue
		}
		m.close()
		back = append(back, newMember(t, servers[len(back)%2], m.uid+"r", relayChannel))
	}
	// The history: every message sent before the kill, the victim's
	// members' included (the stream had them all: everybody received them).
	poll.CheckFor(t, relayDeadline, 20*time.Millisecond, func() error { return lacking(back, everyOther(before)) })
	now := append(slices.Clone(survivors), back...)
	sendAll(t, now, after)
	poll.CheckFor(t, relayDeadline, 20*time.Millisecond, func() error {
		return lacking(now, func(m *member) []expect {
			var e []expect
			for _, o := range now {
				if strings.HasSuffix(o.uid, "r") { // sent only after it came back
					e = append(e, expect{o.uid, 1, after})
				} else {
					e = append(e, expect{o.uid, 1, before + after})
				}
			}
			return e
		})
	})
	if err := anomalies(now); err != nil {
		t.Error(err)
	}
	checkOneOrder(t, now)
	checkNoPanic(t, servers...)
}

// TestNATSKillNode: while every member sends, the NATS node of server C is
// killed (SIGKILL): C reconnects to another node and traffic goes on;
// every member gets every message of every other member exactly once,
// those C's members sent while C was reconnecting included, none of its
// own, no connection drops. Order is not required here: when the killed
// node led the stream, JetStream elects another leader in seconds, every
// server delivers its own members' messages locally first after 2 s, and
// a few messages on their way may be stored out of their sending order
// (README, "Scaling out on NATS"); the test logs how many came out of
// order.
func TestNATSKillNode(t *testing.T) {
	bin := mlesBin(t, "--nats", "--nats-replicas")
	nodes := natstest.Cluster(t, 3)
	servers := startOnCluster(t, bin, nodes)
	var members []*member
	for _, s := range servers {
		for i := 1; i <= membersPerSrv; i++ {
			members = append(members, newMember(t, s, fmt.Sprintf("%s%d", s.name, i), relayChannel))
		}
	}
	waitPeered(t, servers, members)
	const total = 600 // 100 a second: the kill is mid-traffic
	var wg sync.WaitGroup
	errs := make([]error, len(members))
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.pace(total, 1, 10*time.Millisecond)
		}()
	}
	poll.CheckFor(t, relayDeadline, 10*time.Millisecond, func() error {
		if n := members[0].sent.Load(); n < total/4 {
			return fmt.Errorf("%d sent", n)
		}
		return nil
	})
	nodes[2].Kill()
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("sending: %v", err)
		}
	}
	all := func(*member) []expect {
		var e []expect
		for _, o := range members {
			e = append(e, expect{o.uid, 1, total})
		}
		return e
	}
	poll.CheckFor(t, relayDeadline, 20*time.Millisecond, func() error { return lacking(members, all) })
	fence(t, members)
	outOfOrder := 0
	for _, m := range members {
		for _, l := range m.connLogs() {
			_, n := l.problems()
			l.mu.Lock()
			order := l.nOrder
			l.mu.Unlock()
			outOfOrder += order
			if n > order {
				t.Errorf("%s: duplicates, echoes or foreign frames\n%v", m.uid, anomalies([]*member{m}))
			}
		}
		if d := m.dropErrs(); len(d) > 0 {
			t.Errorf("%s on %s: connection dropped: %v", m.uid, m.srv.name, d)
		}
	}
	t.Logf("%d deliveries out of their sender's order (of %d)", outOfOrder, len(members)*(len(members)-1)*total)
	checkNoPanic(t, servers...)
}

// sendAll has every member send its next n numbered messages at once.
func sendAll(t *testing.T, members []*member, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(members))
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.pace(m.next+n-1, relayPerTick, relayTick)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("sending: %v", err)
		}
	}
}

// checkOneOrder checks that any two members' latest connections got the
// messages they both got (from others than the two) in the same order.
func checkOneOrder(t *testing.T, members []*member) {
	t.Helper()
	orders := make([][]string, len(members))
	for i, m := range members {
		orders[i] = m.last().order()
	}
	for i := range members {
		for j := i + 1; j < len(members); j++ {
			ui, uj := members[i].uid+":", members[j].uid+":"
			keep := func(s string) bool { return strings.HasPrefix(s, ui) || strings.HasPrefix(s, uj) }
			a := slices.DeleteFunc(slices.Clone(orders[i]), keep)
			b := slices.DeleteFunc(slices.Clone(orders[j]), keep)
			// Compare the messages both got, in the order each got them.
			inB := map[string]bool{}
			for _, s := range b {
				inB[s] = true
			}
			a = slices.DeleteFunc(a, func(s string) bool { return !inB[s] })
			inA := map[string]bool{}
			for _, s := range a {
				inA[s] = true
			}
			b = slices.DeleteFunc(b, func(s string) bool { return !inA[s] })
			for k := range a {
				if a[k] != b[k] {
					t.Fatalf("%s and %s got messages in different orders: at %d of %d, %s vs %s",
						members[i].uid, members[j].uid, k, len(a), a[k], b[k])
				}
			}
		}
	}
}

// order returns the numbered messages the connection got, as "sender:n",
// in the order they arrived.
func (l *connLog) order() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	type at struct {
		i int
		s string
	}
	var all []at
	for sender, st := range l.streams {
		for n, i := range st.at {
			all = append(all, at{i, fmt.Sprintf("%s:%d", sender, n)})
		}
	}
	sort.Slice(all, func(x, y int) bool { return all[x].i < all[y].i })
	out := make([]string, len(all))
	for k, a := range all {
		out[k] = a.s
	}
	return out
}
