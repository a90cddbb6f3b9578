package server_test

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"

	"github.com/mles/mles/internal/poll"
	"github.com/mles/mles/server"
)

// plainMles is a Mles server that knows nothing of peering, as mles-rs
// behaves for one channel: mles-websocket only, history replayed to each
// joiner, every message relayed to every other member. Built on
// gorilla/websocket, not on our code.
type plainMles struct {
	mu      sync.Mutex
	history []plainMsg
	members map[*websocket.Conn]string
	addr    string
}

type plainMsg struct {
	typ  int
	data []byte
}

func startPlainMles(t *testing.T) *plainMles {
	t.Helper()
	p := &plainMles{members: map[*websocket.Conn]string{}}
	up := websocket.Upgrader{Subprotocols: []string{"mles-websocket"}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		var h struct{ UID, Channel string }
		if _, b, err := c.ReadMessage(); err != nil || json.Unmarshal(b, &h) != nil {
			return
		}
		p.mu.Lock()
		for _, m := range p.history {
			_ = c.WriteMessage(m.typ, m.data)
		}
		p.members[c] = h.UID
		p.mu.Unlock()
		defer func() { p.mu.Lock(); delete(p.members, c); p.mu.Unlock() }()
		for {
			typ, b, err := c.ReadMessage()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.history = append(p.history, plainMsg{typ, b})
			for o := range p.members {
				if o != c {
					_ = o.WriteMessage(typ, b)
				}
			}
			p.mu.Unlock()
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return p
}

// kick closes uid's sessions.
func (p *plainMles) kick(uid string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c, u := range p.members {
		if u == uid {
			_ = c.Close()
		}
	}
}

// TestPeerPlainLeaf: a plain Mles server as a peer gets an ordinary
// client session (mles-websocket): messages flow both ways, and when the
// session reconnects, the plain server's history replay (which holds what
// we already have) reaches no client a second time.
func TestPeerPlainLeaf(t *testing.T) {
	p := startPlainMles(t)
	ts := startServer(t, modes[1], func(o *server.Options) {
		o.Peers = []string{"ws://" + p.addr + "/"}
		o.ServerID = "ours"
		o.PeerRetry, o.PeerRetryMax = 20*time.Millisecond, 100*time.Millisecond
	})
	a := ts.join(t, "a", "plain")
	d := websocket.Dialer{Subprotocols: []string{"mles-websocket"}}
	pc, _, err := d.Dial("ws://"+p.addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if err := pc.WriteMessage(websocket.TextMessage, []byte(`{"uid":"p","channel":"plain"}`)); err != nil {
		t.Fatal(err)
	}
	// a's first message may go before the session is up: it is live
	// traffic only to a plain peer, so a repeats it until p hears one.
	got := make(chan string, 100)
	go func() {
		for {
			_, b, err := pc.ReadMessage()
			if err != nil {
				close(got)
				return
			}
			got <- string(b)
		}
	}()
	deadline := time.After(10 * time.Second)
	for heard := false; !heard; {
		a.mustSend(t, ws.OpText, []byte("x"))
		select {
		case m := <-got:
			heard = m == "x"
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatal("the plain peer never got a's message")
		}
	}
	if err := pc.WriteMessage(websocket.TextMessage, []byte("y")); err != nil {
		t.Fatal(err)
	}
	a.recvUntil(t, ws.OpText, "y")

	// The session reconnects: the plain server replays x (several) and y.
	before := ts.Metrics(t.Context()).PeerDuplicates
	p.kick("ours")
	poll.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if ts.Metrics(t.Context()).PeerDuplicates == before {
			return errors.New("the replay after the reconnect was not recognised")
		}
		return nil
	})
	if err := pc.WriteMessage(websocket.TextMessage, []byte("z")); err != nil {
		t.Fatal(err)
	}
	// a gets z next: not y again, nor x.
	msg, err := a.recv(10 * time.Second)
	if err != nil || string(msg.data) != "z" {
		t.Fatalf("after the reconnect a got %q (%v), want z", msg.data, err)
	}
}
