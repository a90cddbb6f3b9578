package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// fakeMesh is a set of Mles-speaking servers sharing one hub, as peered
// servers look to their clients: a message published on any of them
// reaches every other member of the channel on all. Deliveries to the
// members of server i are held back i x hop, the hop between servers.
type fakeMesh struct {
	hop     time.Duration
	mu      sync.Mutex
	members map[string][]*fakeMember
}

type fakeMember struct {
	c   *websocket.Conn
	out chan fakeMsg
}

type fakeMsg struct {
	at   time.Time
	data []byte
}

func (m *fakeMesh) server(t *testing.T, idx int) string {
	up := websocket.Upgrader{Subprotocols: []string{mlesSubprotocol}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		_, hdr, err := c.ReadMessage()
		if err != nil {
			return
		}
		var join struct{ Channel string }
		if json.Unmarshal(hdr, &join) != nil {
			return
		}
		me := &fakeMember{c: c, out: make(chan fakeMsg, 4096)}
		delay := time.Duration(idx) * m.hop
		go func() {
			for msg := range me.out {
				time.Sleep(time.Until(msg.at.Add(delay)))
				if c.WriteMessage(websocket.BinaryMessage, msg.data) != nil {
					return
				}
			}
		}()
		m.mu.Lock()
		m.members[join.Channel] = append(m.members[join.Channel], me)
		m.mu.Unlock()
		for {
			_, p, err := c.ReadMessage()
			if err != nil {
				return
			}
			msg := fakeMsg{at: time.Now(), data: p}
			m.mu.Lock()
			for _, o := range m.members[join.Channel] {
				if o != me {
					o.out <- msg
				}
			}
			m.mu.Unlock()
		}
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/"
}

// TestPeeredRun runs the peered scenario against two fake servers: members
// split over both, the publisher on the first, the second's members later
// by the hop; each server's metrics recorded and its peer session awaited.
func TestPeeredRun(t *testing.T) {
	if testing.Short() {
		t.Skip("a two-second run")
	}
	mesh := &fakeMesh{hop: 20 * time.Millisecond, members: map[string][]*fakeMember{}}
	var urls, admins []string
	for i := range 2 {
		urls = append(urls, mesh.server(t, i))
		adm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "# TYPE mles_peer_sessions gauge\nmles_peer_sessions 1\nmles_peer_messages_out_total %d\n", 10*(i+1))
		}))
		t.Cleanup(adm.Close)
		admins = append(admins, adm.URL+"/metrics")
	}
	out := t.TempDir() + "/out.jsonl"
	o := parseArgs(t, []string{"-url", strings.Join(urls, ","), "-scenario", "peered", "-members", "7", "-rate", "50",
		"-duration", "1s", "-warmup", "300ms", "-drain", "2s", "-dialers", "4",
		"-admin-url", strings.Join(admins, ","), "-peer-sessions", "1", "-label", "fake", "-out", out})
	res, err := runPubSub(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Params.Servers != 2 || res.Expected == 0 || res.Delivered != res.Expected {
		t.Fatalf("servers %d delivered %d of %d", res.Params.Servers, res.Delivered, res.Expected)
	}
	if len(res.Servers) != 2 || res.Remote == nil {
		t.Fatalf("servers %d remote %v", len(res.Servers), res.Remote)
	}
	l, r := res.Servers[0], res.Remote
	// 7 members: 0, 2, 4, 6 on server 0 (0 publishes), 1, 3, 5 on server 1.
	if l.Receivers != 3 || r.Receivers != 3 || res.Servers[1].Receivers != 3 {
		t.Errorf("receivers: server 0 %d, remote %d", l.Receivers, r.Receivers)
	}
	if l.Delivered != l.Expected || r.Delivered != r.Expected || l.Expected+r.Expected != res.Expected {
		t.Errorf("server 0 %d/%d, remote %d/%d, all %d", l.Delivered, l.Expected, r.Delivered, r.Expected, res.Expected)
	}
	if l.P50Ms >= 15 || r.P50Ms < 19 {
		t.Errorf("p50 server 0 %.2f ms, remote %.2f ms: want the 20 ms hop on the remote side only", l.P50Ms, r.P50Ms)
	}
	if res.Servers[1].MetricsAfter["mles_peer_messages_out_total"] != 20 || l.MetricsStart[metricPeerSessions] != 1 || l.MetricsErrors != 0 {
		t.Errorf("metrics: %+v / %+v", l.MetricsStart, res.Servers[1].MetricsAfter)
	}
	if res.PeerWaitS <= 0 {
		t.Errorf("peer wait %v", res.PeerWaitS)
	}
}

// TestNATSRun runs the nats scenario against two fake servers: the run
// waits for -await on both, the broker process's CPU and RSS count in the
// server side's and are recorded apart.
func TestNATSRun(t *testing.T) {
	if testing.Short() {
		t.Skip("a two-second run")
	}
	mesh := &fakeMesh{hop: 5 * time.Millisecond, members: map[string][]*fakeMember{}}
	var urls, admins []string
	for i := range 2 {
		urls = append(urls, mesh.server(t, i))
		var hits atomic.Int64
		adm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			up := 0
			if hits.Add(1) > 2 {
				up = 1
			}
			fmt.Fprintf(w, "mles_nats_through_stream 1\nmles_nats_consumers %d\nmles_nats_received_total %d\n", up, hits.Load())
		}))
		t.Cleanup(adm.Close)
		admins = append(admins, adm.URL+"/metrics")
	}
	// The broker: a process that burns a little CPU during the window.
	broker := exec.Command("sh", "-c", "while :; do :; done")
	if err := broker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Process.Kill(); broker.Wait() })
	out := t.TempDir() + "/out.jsonl"
	o := parseArgs(t, []string{"-url", strings.Join(urls, ","), "-scenario", "nats", "-members", "5", "-rate", "50",
		"-duration", "1s", "-warmup", "300ms", "-drain", "2s", "-dialers", "4",
		"-server-pid", fmt.Sprintf("%d,%d", os.Getpid(), os.Getpid()), "-broker-pid", strconv.Itoa(broker.Process.Pid),
		"-admin-url", strings.Join(admins, ","), "-await", "mles_nats_through_stream=1,mles_nats_consumers=1", "-label", "fake", "-out", out})
	res, err := runPubSub(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Scenario != ScenarioNATS || res.Params.Servers != 2 || res.Expected == 0 || res.Delivered != res.Expected {
		t.Fatalf("%s servers %d delivered %d of %d", res.Scenario, res.Params.Servers, res.Delivered, res.Expected)
	}
	if res.AwaitS <= 0 {
		t.Errorf("await %v", res.AwaitS)
	}
	if len(res.Brokers) != 1 || res.Brokers[0].PID != broker.Process.Pid || res.Brokers[0].Name != "sh" ||
		res.Brokers[0].CPUS < 0.3 || res.Brokers[0].RSSAfterBytes <= 0 {
		t.Fatalf("brokers %+v", res.Brokers)
	}
	var servers float64
	for _, sp := range res.Servers {
		servers += sp.CPUS
	}
	if res.BrokerCPUS != res.Brokers[0].CPUS || math.Abs(res.ServerCPUS-servers-res.BrokerCPUS) > 0.02 {
		t.Errorf("server cpu %v: servers %v + broker %v", res.ServerCPUS, servers, res.BrokerCPUS)
	}
	if res.Servers[1].MetricsEnd["mles_nats_received_total"] <= res.Servers[1].MetricsStart["mles_nats_received_total"] {
		t.Errorf("nats metrics not recorded: %+v", res.Servers[1])
	}
}

// parseArgs parses args as main does.
func parseArgs(t *testing.T, args []string) *Options {
	t.Helper()
	var o Options
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	o.register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := o.validate(set); err != nil {
		t.Fatal(err)
	}
	return &o
}
