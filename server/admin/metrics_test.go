package admin_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	dto "github.com/prometheus/client_model/go"

	"github.com/mles/mles/internal/poll"
	"github.com/mles/mles/server"
	"github.com/mles/mles/server/admin"
)

// TestMetricsTraffic: while members exchange messages, each counter of a
// /metrics scrape moves as the traffic says: messages in by the messages
// sent, deliveries by sent x (members - 1), bytes likewise, the history by
// the messages kept; the gauges show the members, connections (the
// reactors' add up to them), one channel and no drain.
func TestMetricsTraffic(t *testing.T) {
	f := start(t, false, nil)
	const members, per = 4, 25 // per: messages each member sends
	const sent = members * per
	var cs []*websocket.Conn
	for i := range members {
		cs = append(cs, join(t, f.ws, fmt.Sprintf("m%d", i), "traffic", nil))
	}
	f.waitMembers(t, members)
	// Every member has every join frame before the count starts: a warm
	// message from each reaches all the others.
	for i, from := range cs {
		text := fmt.Sprintf("warm %d", i)
		if err := from.WriteMessage(websocket.TextMessage, []byte(text)); err != nil {
			t.Fatal(err)
		}
		for j, to := range cs {
			if j != i {
				readUntil(t, to, text)
			}
		}
	}
	s0 := f.scrape(t)

	var bytesIn float64
	for i, c := range cs {
		for j := range per {
			p := fmt.Appendf(nil, "message %d of %d", j, i)
			if err := c.WriteMessage(websocket.TextMessage, p); err != nil {
				t.Fatal(err)
			}
			bytesIn += float64(len(p) + 2) // the server's frame: 2-byte header, unmasked
		}
	}
	for i, c := range cs {
		_ = c.SetReadDeadline(time.Now().Add(wait))
		for range (members - 1) * per {
			if _, _, err := c.ReadMessage(); err != nil {
				t.Fatalf("member %d: %v", i, err)
			}
		}
	}
	var s1 scrape
	poll.CheckFor(t, wait, 10*time.Millisecond, func() error {
		s1 = f.scrape(t)
		if d := s1.value("mles_deliveries_total") - s0.value("mles_deliveries_total"); d != sent*(members-1) {
			return fmt.Errorf("mles_deliveries_total grew by %v, want %d", d, sent*(members-1))
		}
		return nil
	})
	delta := func(name string) float64 { return s1.value(name) - s0.value(name) }
	checks := []struct {
		name      string
		got, want float64
	}{
		{"mles_messages_in_total delta", delta("mles_messages_in_total"), sent},
		{"mles_messages_in_bytes_total delta", delta("mles_messages_in_bytes_total"), bytesIn},
		{"mles_deliveries_bytes_total delta", delta("mles_deliveries_bytes_total"), bytesIn * (members - 1)},
		{"mles_history_messages delta", delta("mles_history_messages"), sent},
		{"mles_connections_accepted_total delta", delta("mles_connections_accepted_total"), 0},
		{"mles_members", s1.value("mles_members"), members},
		{"mles_connections", s1.value("mles_connections"), members},
		{"mles_reactor_connections summed", s1.sum("mles_reactor_connections"), members},
		{"mles_channels", s1.value("mles_channels"), 1},
		{"mles_draining", s1.value("mles_draining"), 0},
		{"mles_build_info", s1.value("mles_build_info", "version", "test"), 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
	if d := delta("mles_history_bytes"); d <= 0 {
		t.Errorf("mles_history_bytes grew by %v", d)
	}
	if n := len(s1["mles_reactor_connections"].GetMetric()); n != 2 {
		t.Errorf("mles_reactor_connections has %d series, want one per reactor (2)", n)
	}
	checkFamilies(t, s1)
}

// checkFamilies: every mles_ family has help text, counters end in _total
// and nothing else does, and no label could carry a uid, channel or
// address: the label names are a fixed few.
func checkFamilies(t *testing.T, s scrape) {
	t.Helper()
	allowed := map[string]bool{"reason": true, "code": true, "reactor": true, "version": true}
	for name, fam := range s {
		if !strings.HasPrefix(name, "mles_") {
			continue
		}
		if fam.GetHelp() == "" {
			t.Errorf("%s has no help text", name)
		}
		if counter := fam.GetType() == dto.MetricType_COUNTER; counter != strings.HasSuffix(name, "_total") {
			t.Errorf("%s is a %v", name, fam.GetType())
		}
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if !allowed[l.GetName()] {
					t.Errorf("%s has label %s=%q", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
	// The families with series from the start (the labeled ones by close
	// reason or code appear with their first close).
	for _, want := range []string{"mles_build_info", "mles_connections", "mles_connections_accepted_total",
		"mles_connections_refused_total", "mles_tls_handshakes_in_flight", "mles_channels", "mles_members",
		"mles_messages_in_total", "mles_messages_in_bytes_total", "mles_deliveries_total",
		"mles_deliveries_bytes_total", "mles_slow_consumer_closes_total", "mles_messages_dropped_total",
		"mles_history_messages", "mles_history_bytes", "mles_reactor_connections", "mles_draining",
		"mles_scrape_snapshot_seconds", "mles_peer_sessions", "mles_peer_messages_in_total",
		"mles_peer_messages_out_total", "mles_peer_duplicates_total"} {
		if s[want] == nil {
			t.Errorf("no %s in the scrape", want)
		}
	}
	for _, want := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if s[want] == nil {
			t.Errorf("no %s: the Go and process collectors are missing", want)
		}
	}
}

// TestMetricsBadHeader: a header frame without a channel is closed with
// 1008 and counts once in closes by reason and once in close codes sent.
func TestMetricsBadHeader(t *testing.T) {
	f := start(t, false, nil)
	s0 := f.scrape(t)
	c := dial(t, f.ws, nil)
	if err := c.WriteMessage(websocket.TextMessage, []byte(`{"uid":"x"}`)); err != nil {
		t.Fatal(err)
	}
	if code, err := closeCode(c, wait); code != websocket.ClosePolicyViolation {
		t.Fatalf("close code %d (%v), want 1008", code, err)
	}
	poll.CheckFor(t, wait, 10*time.Millisecond, func() error {
		s1 := f.scrape(t)
		for _, c := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"mles_closes_total", []string{"reason", "invalid_header"}, 1},
			{"mles_close_codes_sent_total", []string{"code", "1008"}, 1},
			{"mles_connections_accepted_total", nil, 1},
			{"mles_connections", nil, 0},
		} {
			got := s1.value(c.name, c.labels...) - s0.value(c.name, c.labels...)
			if c.name == "mles_connections" {
				got = s1.value(c.name)
			}
			if got != c.want {
				return fmt.Errorf("%s%v: %v, want %v", c.name, c.labels, got, c.want)
			}
		}
		if d := s1.sum("mles_closes_total") - s0.sum("mles_closes_total"); d != 1 {
			return fmt.Errorf("mles_closes_total grew by %v over all reasons, want 1", d)
		}
		return nil
	})
}

// TestMetricsSlowConsumer: a member that stops reading while a publisher
// sends large messages is closed as a slow consumer, which counts once in
// mles_slow_consumer_closes_total and once in closes by reason; what it
// had not read counts as dropped.
func TestMetricsSlowConsumer(t *testing.T) {
	f := start(t, false, func(o *server.Options) {
		o.History = 1
		o.MaxPending = 64 << 10
		o.SlowGrace = 200 * time.Millisecond
	})
	const size = 16 << 10
	pub := join(t, f.ws, "pub", "slow", nil)
	// A small receive buffer: the kernel holds little of what the server
	// sends, so its output backs up into MaxPending soon.
	small := &websocket.Dialer{NetDialContext: (&netDialer{rcvBuf: 4096}).DialContext}
	slow := join(t, f.ws, "sloth", "slow", small)
	f.waitMembers(t, 2)
	s0 := f.scrape(t)

	msg := make([]byte, size)
	deadline := time.Now().Add(20 * time.Second)
	for sent := 0; f.scrape(t).value("mles_slow_consumer_closes_total") == s0.value("mles_slow_consumer_closes_total"); sent++ {
		if time.Now().After(deadline) {
			t.Fatalf("no slow-consumer close after %d messages of %d bytes", sent, size)
		}
		if err := pub.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			t.Fatal(err)
		}
	}
	// Reading again lets the close finish (1008 after what was queued).
	if code, err := closeCode(slow, wait); code != websocket.ClosePolicyViolation && err == nil {
		t.Errorf("slow consumer got close code %d, want 1008", code)
	}
	poll.CheckFor(t, wait, 10*time.Millisecond, func() error {
		s1 := f.scrape(t)
		delta := func(name string, labels ...string) float64 {
			return s1.value(name, labels...) - s0.value(name, labels...)
		}
		if d := delta("mles_slow_consumer_closes_total"); d != 1 {
			return fmt.Errorf("mles_slow_consumer_closes_total grew by %v, want 1", d)
		}
		if d := delta("mles_closes_total", "reason", "slow_consumer"); d != 1 {
			return fmt.Errorf(`mles_closes_total{reason="slow_consumer"} grew by %v, want 1`, d)
		}
		if d := delta("mles_messages_dropped_total", "reason", "slow_consumer") + delta("mles_messages_dropped_total", "reason", "lapped"); d < 1 {
			return fmt.Errorf("mles_messages_dropped_total (slow_consumer, lapped) grew by %v", d)
		}
		if m := s1.value("mles_members"); m != 1 {
			return fmt.Errorf("mles_members %v, want 1 (the publisher)", m)
		}
		return nil
	})
}

// TestMetricsOneSnapshotPerScrape: a scrape of every metric and a /varz
// each take exactly one Metrics snapshot (it runs a task on every event
// loop, so one per metric would multiply the cost of a scrape).
func TestMetricsOneSnapshotPerScrape(t *testing.T) {
	src := &countingSource{m: server.Metrics{
		Refused:  map[string]uint64{"max_conns": 1},
		Closes:   map[string]uint64{"eof": 2, "invalid_header": 1},
		Dropped:  map[string]uint64{"lapped": 3},
		Loops:    []server.LoopMetrics{{Conns: 1}, {Conns: 2}},
		Draining: true,
	}}
	hs := httptest.NewServer(admin.New(admin.Config{Server: src}))
	defer hs.Close()
	for _, path := range []string{"/metrics", "/varz", "/metrics"} {
		before := src.calls.Load()
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", path, resp.StatusCode)
		}
		if n := src.calls.Load() - before; n != 1 {
			t.Errorf("%s took %d snapshots, want 1", path, n)
		}
	}
}

// countingSource is a Source with fixed figures that counts snapshots.
type countingSource struct {
	m     server.Metrics
	calls atomic.Int64
}

func (c *countingSource) Metrics(context.Context) server.Metrics { c.calls.Add(1); return c.m }
func (c *countingSource) Ready() bool                            { return true }

// netDialer dials TCP with a small SO_RCVBUF, set before connecting so
// the window the kernel offers stays small.
type netDialer struct{ rcvBuf int }

func (d *netDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, d.rcvBuf)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return nd.DialContext(ctx, network, addr)
}
