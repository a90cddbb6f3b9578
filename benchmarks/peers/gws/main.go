// Command gws is a Mles-speaking benchmark peer on lxzan/gws: gws.Server
// (its own HTTP upgrade parsing, one read goroutine per connection, an
// asynchronous write queue per connection) and fan-out through
// gws.NewBroadcaster, which frames a message once for all recipients.
// ParallelEnabled stays off: messages from one publisher must keep their
// order, and the server runs on one core.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net"
	"sync"

	"github.com/lxzan/gws"
)

type channel struct {
	mu      sync.RWMutex
	members map[*gws.Conn]struct{}
}

type handler struct {
	gws.BuiltinEventHandler
	mu       sync.Mutex
	channels map[string]*channel
}

type joinFrame struct {
	UID     string `json:"uid"`
	Channel string `json:"channel"`
}

const sessionKey = "ch"

func (h *handler) OnPing(c *gws.Conn, payload []byte) { _ = c.WritePong(payload) }

func (h *handler) OnClose(c *gws.Conn, err error) {
	v, ok := c.Session().Load(sessionKey)
	if !ok {
		return
	}
	ch := v.(*channel)
	ch.mu.Lock()
	delete(ch.members, c)
	ch.mu.Unlock()
}

func (h *handler) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	v, ok := c.Session().Load(sessionKey)
	if !ok {
		var jf joinFrame
		if json.Unmarshal(m.Bytes(), &jf) != nil || jf.Channel == "" {
			_ = c.NetConn().Close()
			return
		}
		h.mu.Lock()
		ch := h.channels[jf.Channel]
		if ch == nil {
			ch = &channel{members: make(map[*gws.Conn]struct{})}
			h.channels[jf.Channel] = ch
		}
		h.mu.Unlock()
		ch.mu.Lock()
		ch.members[c] = struct{}{}
		ch.mu.Unlock()
		c.Session().Store(sessionKey, ch)
		return
	}
	ch := v.(*channel)
	// The broadcaster frames the payload on its first Broadcast, before
	// m.Close returns the buffer; without compression it keeps no reference.
	b := gws.NewBroadcaster(m.Opcode, m.Bytes())
	ch.mu.RLock()
	for member := range ch.members {
		if member != c {
			_ = b.Broadcast(member)
		}
	}
	ch.mu.RUnlock()
	_ = b.Close()
}

func newServer() *gws.Server {
	h := &handler{channels: make(map[string]*channel)}
	return gws.NewServer(h, &gws.ServerOption{
		SubProtocols:       []string{"mles-websocket"},
		ReadMaxPayloadSize: 16 << 20,
		ParallelEnabled:    false,
	})
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9002", "listen address")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(newServer().RunListener(ln))
}
