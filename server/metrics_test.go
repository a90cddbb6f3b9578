package server_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/internal/poll"
	"github.com/mles/mles/server"
)

// TestMetrics: each counter moves as the traffic says. Messages in and
// deliveries (sent x (members - 1), bytes likewise), the history gauge, a
// bad header, a message over MaxMessage and, over TLS, a client that is
// not TLS each count once where they belong; the loops' connections add up
// to the server's.
func TestMetrics(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, func(o *server.Options) {
			o.MaxMessage = 4 << 10
			o.Reactors = 2
		})
		metrics := func() server.Metrics { return ts.Metrics(context.Background()) }
		const members, sent = 4, 25
		var clients []*rawClient
		for i := range members {
			clients = append(clients, ts.joinSeq(t, fmt.Sprintf("m%d", i), "metrics"))
		}
		// Every member has its history (the joins) before the count starts.
		exchange(t, clients, "warm")
		m0 := metrics()
		var bytesIn uint64
		for i, c := range clients {
			for j := range sent {
				p := fmt.Appendf(nil, "message %d of %d", j, i)
				c.mustSend(t, ws.OpText, p)
				bytesIn += uint64(len(p) + 2) // the server's frame: 2-byte header, unmasked
			}
		}
		for i, c := range clients {
			for range (members - 1) * sent {
				if _, err := c.recv(shortWait); err != nil {
					t.Fatalf("member %d: %v", i, err)
				}
			}
		}
		var m1 server.Metrics
		poll.CheckFor(t, shortWait, 5*time.Millisecond, func() error {
			m1 = metrics()
			if d := m1.Deliveries - m0.Deliveries; d != members*sent*(members-1) {
				return fmt.Errorf("deliveries %d, want %d", d, members*sent*(members-1))
			}
			return nil
		})
		if d := m1.MessagesIn - m0.MessagesIn; d != members*sent {
			t.Errorf("messages in %d, want %d", d, members*sent)
		}
		if d := m1.BytesIn - m0.BytesIn; d != bytesIn {
			t.Errorf("bytes in %d, want %d", d, bytesIn)
		}
		if d := m1.BytesOut - m0.BytesOut; d != bytesIn*(members-1) {
			t.Errorf("bytes out %d, want %d", d, bytesIn*(members-1))
		}
		if d := m1.HistoryMessages - m0.HistoryMessages; d != members*sent {
			t.Errorf("history grew by %d messages, want %d", d, members*sent)
		}
		if m1.HistoryBytes <= m0.HistoryBytes {
			t.Errorf("history bytes %d, then %d", m0.HistoryBytes, m1.HistoryBytes)
		}
		var conns int
		for _, l := range m1.Loops {
			conns += l.Conns
		}
		if int64(conns) != m1.Conns || len(m1.Loops) != 2 {
			t.Errorf("loops %+v hold %d connections, the server %d", m1.Loops, conns, m1.Conns)
		}

		// A bad header: 1008, one close "invalid_header".
		bad := ts.upgraded(t, dialConfig{})
		bad.mustSend(t, ws.OpText, []byte(`{"uid":"x"}`))
		bad.expectClose(t, ws.StatusPolicyViolation, shortWait)
		// A message over MaxMessage: 1009, one dropped "too_large".
		big := ts.joinSeq(t, "big", "metrics-big")
		big.mustSend(t, ws.OpBinary, make([]byte, 8<<10))
		big.expectClose(t, ws.StatusMessageTooBig, shortWait)
		if m.tls {
			// Not TLS at all: a handshake failure.
			c, err := net.Dial("tcp", ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = c.Write([]byte(strings.Repeat("\x00", 64)))
			_ = c.SetReadDeadline(time.Now().Add(shortWait))
			_, _ = c.Read(make([]byte, 1))
			c.Close()
		}
		poll.CheckFor(t, shortWait, 5*time.Millisecond, func() error {
			m2 := metrics()
			checks := []struct {
				name      string
				got, want uint64
			}{
				{"closes invalid header", m2.Closes["invalid_header"] - m1.Closes["invalid_header"], 1},
				{"close code 1008", m2.CloseCodes[1008] - m1.CloseCodes[1008], 1},
				{"close code 1009", m2.CloseCodes[1009] - m1.CloseCodes[1009], 1},
				{"dropped too_large", m2.Dropped["too_large"] - m1.Dropped["too_large"], 1},
				{"accepted", m2.Accepted - m1.Accepted, uint64(2 + map[bool]int{true: 1}[m.tls])},
			}
			if m.tls {
				checks = append(checks, struct {
					name      string
					got, want uint64
				}{"handshake failures", m2.HandshakeFailures["tls_error"] - m1.HandshakeFailures["tls_error"], 1})
			}
			for _, c := range checks {
				if c.got != c.want {
					return fmt.Errorf("%s: %d, want %d", c.name, c.got, c.want)
				}
			}
			return nil
		})
	})
}
