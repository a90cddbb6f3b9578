// Command gorilla is a Mles-speaking benchmark peer on gorilla/websocket:
// the classic hub, one reader and one writer goroutine per connection, a
// buffered send channel per connection, and fan-out with one
// websocket.PreparedMessage per published message (the frame is built once
// and shared by every recipient).
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// sendQueue is the per-connection send buffer. A member whose queue is full
// is a slow consumer and is dropped, as in gorilla's chat example.
const sendQueue = 1024

type client struct {
	conn *websocket.Conn
	send chan *websocket.PreparedMessage
	once sync.Once
}

func (c *client) stop() { c.once.Do(func() { close(c.send) }) }

type channel struct {
	mu      sync.RWMutex
	members map[*client]struct{}
}

type hub struct {
	mu       sync.Mutex
	channels map[string]*channel
}

func (h *hub) join(name string, c *client) *channel {
	h.mu.Lock()
	ch := h.channels[name]
	if ch == nil {
		ch = &channel{members: make(map[*client]struct{})}
		h.channels[name] = ch
	}
	h.mu.Unlock()
	ch.mu.Lock()
	ch.members[c] = struct{}{}
	ch.mu.Unlock()
	return ch
}

func (h *hub) leave(ch *channel, c *client) {
	ch.mu.Lock()
	delete(ch.members, c)
	ch.mu.Unlock()
}

// broadcast prepares the frame once and queues it to every other member.
func (ch *channel) broadcast(from *client, typ int, data []byte) {
	pm, err := websocket.NewPreparedMessage(typ, data)
	if err != nil {
		return
	}
	var slow []*client
	ch.mu.RLock()
	for m := range ch.members {
		if m == from {
			continue
		}
		select {
		case m.send <- pm:
		default:
			slow = append(slow, m)
		}
	}
	ch.mu.RUnlock()
	if len(slow) > 0 {
		// Remove before closing the queue: a broadcaster that can still
		// see a member never sends on a closed channel.
		ch.mu.Lock()
		for _, m := range slow {
			delete(ch.members, m)
		}
		ch.mu.Unlock()
		for _, m := range slow {
			m.stop()
		}
	}
}

var upgrader = websocket.Upgrader{
	ReadBufferSize:  4096,
	WriteBufferSize: 4096,
	// Prepared messages bypass the write buffer; pool it so idle
	// connections do not each hold one.
	WriteBufferPool: &sync.Pool{},
	Subprotocols:    []string{"mles-websocket"},
	CheckOrigin:     func(*http.Request) bool { return true },
}

type joinFrame struct {
	UID     string `json:"uid"`
	Channel string `json:"channel"`
}

func (h *hub) serveWS(w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	conn.SetReadLimit(16 << 20)
	_, first, err := conn.ReadMessage()
	var jf joinFrame
	if err != nil || json.Unmarshal(first, &jf) != nil || jf.Channel == "" {
		conn.Close()
		return
	}
	c := &client{conn: conn, send: make(chan *websocket.PreparedMessage, sendQueue)}
	ch := h.join(jf.Channel, c)
	go c.writer()
	for {
		typ, data, err := conn.ReadMessage()
		if err != nil {
			break
		}
		ch.broadcast(c, typ, data)
	}
	h.leave(ch, c)
	c.stop()
}

func (c *client) writer() {
	defer c.conn.Close()
	for pm := range c.send {
		if err := c.conn.WritePreparedMessage(pm); err != nil {
			// Drain so broadcasters never block on a dead member.
			for range c.send {
			}
			return
		}
	}
	_ = c.conn.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), time.Now().Add(time.Second))
}

func serve(ln net.Listener) error {
	h := &hub{channels: make(map[string]*channel)}
	srv := &http.Server{Handler: http.HandlerFunc(h.serveWS)}
	return srv.Serve(ln)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9001", "listen address")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(serve(ln))
}
