// Package peertest checks that a benchmark peer speaks enough of the Mles
// protocol for the load generator: subprotocol echo, join frame, fan-out to
// every other member of the channel (not to the sender), message type kept.
package peertest

import (
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Check dials url three times, joins one channel, and verifies that a text
// and a binary message from the first client reach the other two unchanged
// and not the sender; a member of another channel receives nothing.
func Check(t *testing.T, url string) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"mles-websocket"}, HandshakeTimeout: 5 * time.Second}
	dial := func(uid, channel string) *websocket.Conn {
		var c *websocket.Conn
		var resp *http.Response
		var err error
		for i := 0; i < 50; i++ { // the server may still be starting
			c, resp, err = d.Dial(url, nil)
			if err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("dial %s: %v", url, err)
		}
		if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "mles-websocket" {
			t.Fatalf("subprotocol %q, want mles-websocket", got)
		}
		if err := c.WriteMessage(websocket.TextMessage, []byte(`{"uid":"`+uid+`","channel":"`+channel+`"}`)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a, b, c := dial("a", "room"), dial("b", "room"), dial("c", "room")
	other := dial("x", "other")
	time.Sleep(200 * time.Millisecond) // joins are processed asynchronously
	msgs := []struct {
		typ  int
		data string
	}{{websocket.TextMessage, "hello"}, {websocket.BinaryMessage, "\x00\x01bin"}}
	for _, m := range msgs {
		if err := a.WriteMessage(m.typ, []byte(m.data)); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []*websocket.Conn{b, c} {
		for _, m := range msgs {
			r.SetReadDeadline(time.Now().Add(3 * time.Second))
			typ, data, err := r.ReadMessage()
			if err != nil {
				t.Fatalf("receive: %v", err)
			}
			if typ != m.typ || string(data) != m.data {
				t.Fatalf("got (%d %q), want (%d %q)", typ, data, m.typ, m.data)
			}
		}
	}
	for _, r := range []*websocket.Conn{a, other} {
		r.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if typ, data, err := r.ReadMessage(); err == nil {
			t.Fatalf("unexpected delivery (%d %q)", typ, data)
		}
	}
}
