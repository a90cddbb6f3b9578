// Command nbio is a Mles-speaking benchmark peer on lesismal/nbio: the
// nbhttp engine in non-blocking mode (epoll pollers, no goroutine per
// connection) with its websocket upgrader. Fan-out calls WriteMessage on
// every other member; nbio writes directly and queues only what the socket
// does not take (capped at 4 MiB per connection, like mles's
// --max-pending, so a slow consumer cannot grow memory without bound).
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"
)

type channel struct {
	mu      sync.RWMutex
	members map[*websocket.Conn]struct{}
}

type hub struct {
	mu       sync.Mutex
	channels map[string]*channel
}

type joinFrame struct {
	UID     string `json:"uid"`
	Channel string `json:"channel"`
}

func (h *hub) onMessage(c *websocket.Conn, mt websocket.MessageType, data []byte) {
	ch, _ := c.Session().(*channel)
	if ch == nil {
		var jf joinFrame
		if json.Unmarshal(data, &jf) != nil || jf.Channel == "" {
			_ = c.Close()
			return
		}
		h.mu.Lock()
		ch = h.channels[jf.Channel]
		if ch == nil {
			ch = &channel{members: make(map[*websocket.Conn]struct{})}
			h.channels[jf.Channel] = ch
		}
		h.mu.Unlock()
		ch.mu.Lock()
		ch.members[c] = struct{}{}
		ch.mu.Unlock()
		c.SetSession(ch)
		return
	}
	ch.mu.RLock()
	for m := range ch.members {
		if m != c {
			_ = m.WriteMessage(mt, data)
		}
	}
	ch.mu.RUnlock()
}

func (h *hub) onClose(c *websocket.Conn, _ error) {
	if ch, _ := c.Session().(*channel); ch != nil {
		ch.mu.Lock()
		delete(ch.members, c)
		ch.mu.Unlock()
	}
}

func newEngine(addr string) *nbhttp.Engine {
	h := &hub{channels: make(map[string]*channel)}
	u := websocket.NewUpgrader()
	u.Subprotocols = []string{"mles-websocket"}
	u.CheckOrigin = func(*http.Request) bool { return true }
	u.KeepaliveTime = 0 // no read deadline: idle members stay joined
	u.OnMessage(h.onMessage)
	u.OnClose(h.onClose)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := u.Upgrade(w, r, nil); err != nil {
			return
		}
	})
	return nbhttp.NewEngine(nbhttp.Config{
		Network:                 "tcp",
		Addrs:                   []string{addr},
		IOMod:                   nbhttp.IOModNonBlocking,
		ReleaseWebsocketPayload: true,
		MaxWriteBufferSize:      4 << 20,
		Handler:                 handler,
	})
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9003", "listen address")
	flag.Parse()
	e := newEngine(*addr)
	if err := e.Start(); err != nil {
		log.Fatal(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	e.Stop()
}
