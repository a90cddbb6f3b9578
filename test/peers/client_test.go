package peers

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// subprotocol is the one the server requires (SPEC 1.1).
const subprotocol = "mles-websocket"

var dialer = websocket.Dialer{Subprotocols: []string{subprotocol}, HandshakeTimeout: 10 * time.Second}

// dialJoin opens a WebSocket to addr and sends the header frame.
func dialJoin(addr, uid, channel string) (*websocket.Conn, error) {
	c, _, err := dialer.Dial("ws://"+addr+"/", nil)
	if err != nil {
		return nil, err
	}
	if c.Subprotocol() != subprotocol {
		c.Close()
		return nil, fmt.Errorf("subprotocol %q, want %q", c.Subprotocol(), subprotocol)
	}
	hdr, _ := json.Marshal(map[string]string{"uid": uid, "channel": channel})
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := c.WriteMessage(websocket.TextMessage, hdr); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// member is a test client: one uid on one channel of one server, over one
// connection at a time (a new one after a drop, when the test rejoins).
// A reader goroutine per connection records what arrives in that
// connection's connLog. One goroutine at a time sends: the test goroutine
// or the member's pump, never both.
type member struct {
	uid     string
	channel string
	srv     *server

	next int          // number of the next message to send; owned by the sending goroutine
	sent atomic.Int64 // highest number whose write returned without error

	readers sync.WaitGroup

	mu      sync.Mutex
	conn    *websocket.Conn // current connection
	dead    chan struct{}   // closed when the current connection's reader ended
	logs    []*connLog      // one per connection, oldest first
	drops   []error         // read errors that were not the test closing the member
	closing bool
}

// newMember joins uid to channel on srv and closes it when the test ends.
func newMember(t *testing.T, srv *server, uid, channel string) *member {
	t.Helper()
	m := &member{uid: uid, channel: channel, srv: srv, next: 1}
	if err := m.join(); err != nil {
		t.Fatalf("%s joining %q on %s: %v", uid, channel, srv, err)
	}
	t.Cleanup(m.close)
	return m
}

// join opens a new connection; its log treats own messages numbered from
// m.next on as echoes (older ones may come back as history).
func (m *member) join() error {
	c, err := dialJoin(m.srv.addr, m.uid, m.channel)
	if err != nil {
		return err
	}
	l := &connLog{owner: m.uid, channel: m.channel, ownFrom: m.next, streams: map[string]*stream{}}
	dead := make(chan struct{})
	m.mu.Lock()
	m.conn, m.dead = c, dead
	m.logs = append(m.logs, l)
	m.mu.Unlock()
	m.readers.Add(1)
	go m.read(c, l, dead)
	return nil
}

func (m *member) read(c *websocket.Conn, l *connLog, dead chan struct{}) {
	defer m.readers.Done()
	defer close(dead)
	for {
		typ, data, err := c.ReadMessage()
		if err != nil {
			m.mu.Lock()
			if !m.closing {
				m.drops = append(m.drops, err)
			}
			m.mu.Unlock()
			l.finish(err)
			return
		}
		l.record(typ, data)
	}
}

// close ends the member's connection and waits for its readers.
func (m *member) close() {
	m.mu.Lock()
	m.closing = true
	c := m.conn
	m.mu.Unlock()
	if c != nil {
		c.Close()
	}
	m.readers.Wait()
}

// current returns the connection and its dead channel.
func (m *member) current() (*websocket.Conn, chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.conn, m.dead
}

// last returns the log of the current (latest) connection.
func (m *member) last() *connLog {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.logs[len(m.logs)-1]
}

// connLogs returns the logs of every connection, oldest first.
func (m *member) connLogs() []*connLog {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*connLog(nil), m.logs...)
}

// dropErrs returns the read errors of connections the test did not close.
func (m *member) dropErrs() []error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]error(nil), m.drops...)
}

// writeText sends one text message on c.
func writeText(c *websocket.Conn, text string) error {
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.WriteMessage(websocket.TextMessage, []byte(text))
}

// sendNext sends "uid:n" with the member's next number.
func (m *member) sendNext() error {
	c, _ := m.current()
	n := m.next
	m.next++
	if err := writeText(c, m.uid+":"+strconv.Itoa(n)); err != nil {
		return fmt.Errorf("%s sending %d: %w", m.uid, n, err)
	}
	m.sent.Store(int64(n))
	return nil
}

// pace sends the member's messages up to number upTo, perTick of them
// every tick: a steady rate, from the calling goroutine.
func (m *member) pace(upTo, perTick int, tick time.Duration) error {
	tk := time.NewTicker(tick)
	defer tk.Stop()
	for m.next <= upTo {
		<-tk.C
		for i := 0; i < perTick && m.next <= upTo; i++ {
			if err := m.sendNext(); err != nil {
				return err
			}
		}
	}
	return nil
}

// fenceTag marks a member's fence: one message "uid/fence:n" sent after
// everything else arrived everywhere, so that a late duplicate or a
// message still circulating shows up before the final checks.
const fenceTag = "/fence"

// sendFence sends the member's fence, numbered m.next (so that an echo of
// it counts as one on this connection).
func (m *member) sendFence() error {
	c, _ := m.current()
	if err := writeText(c, m.uid+fenceTag+":"+strconv.Itoa(m.next)); err != nil {
		return fmt.Errorf("%s sending its fence: %w", m.uid, err)
	}
	return nil
}

// connLog is what one connection of a member received, checked as it
// arrives: join frames (ignored, but only of the member's channel),
// "sender:n" text messages with n increasing per sender and never twice,
// never the member's own messages sent on this connection.
type connLog struct {
	owner   string
	channel string
	ownFrom int // own messages numbered from here on are echoes

	mu         sync.Mutex
	arrivals   int // messages of any kind so far
	joins      int
	streams    map[string]*stream
	anomalies  []string // the first maxAnomalies
	nAnomalies int
	nOrder     int   // of them, messages out of their sender's order
	err        error // why the connection ended; nil while it is open
}

// stream is what one connection received from one sender.
type stream struct {
	at   map[int]int // number -> arrival index (1-based) on the connection
	last int         // highest number so far
}

const maxAnomalies = 20

func (l *connLog) anomaly(format string, a ...any) {
	l.nAnomalies++
	if len(l.anomalies) < maxAnomalies {
		l.anomalies = append(l.anomalies, fmt.Sprintf("#%d: ", l.arrivals)+fmt.Sprintf(format, a...))
	}
}

func (l *connLog) record(typ int, data []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.arrivals++
	if typ == websocket.TextMessage && len(data) > 0 && data[0] == '{' {
		var h struct {
			UID     string `json:"uid"`
			Channel string `json:"channel"`
		}
		if json.Unmarshal(data, &h) == nil && h.UID != "" {
			if h.Channel != l.channel {
				l.anomaly("join frame of channel %q on channel %q: %.200q", h.Channel, l.channel, data)
			}
			l.joins++
			return
		}
	}
	sender, num, ok := strings.Cut(string(data), ":")
	n, err := strconv.Atoi(num)
	if typ != websocket.TextMessage || !ok || err != nil || n < 1 || sender == "" {
		l.anomaly("unexpected message (type %d) %.200q", typ, data)
		return
	}
	if base, _, _ := strings.Cut(sender, "/"); base == l.owner && n >= l.ownFrom {
		l.anomaly("its own message %s:%d came back", sender, n)
	}
	st := l.streams[sender]
	if st == nil {
		st = &stream{at: map[int]int{}}
		l.streams[sender] = st
	}
	if first, dup := st.at[n]; dup {
		l.anomaly("%s:%d again (first at #%d)", sender, n, first)
		return
	}
	if n < st.last {
		l.anomaly("%s:%d after %s:%d (out of order)", sender, n, sender, st.last)
		l.nOrder++
	}
	st.at[n] = l.arrivals
	st.last = max(st.last, n)
}

func (l *connLog) finish(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.err = err
}

// missing returns the numbers in [from, to] not received from sender.
func (l *connLog) missing(sender string, from, to int) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	var miss []int
	st := l.streams[sender]
	for n := from; n <= to; n++ {
		if st == nil {
			miss = append(miss, n)
			continue
		}
		if _, ok := st.at[n]; !ok {
			miss = append(miss, n)
		}
	}
	return miss
}

// numbers returns what the connection received from sender, sorted.
func (l *connLog) numbers(sender string) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.streams[sender]
	if st == nil {
		return nil
	}
	ns := make([]int, 0, len(st.at))
	for n := range st.at {
		ns = append(ns, n)
	}
	sort.Ints(ns)
	return ns
}

// has reports whether anything arrived from sender.
func (l *connLog) has(sender string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.streams[sender] != nil
}

// arrival returns the arrival index of sender's message n, 0 if absent.
func (l *connLog) arrival(sender string, n int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.streams[sender]; st != nil {
		return st.at[n]
	}
	return 0
}

// problems returns the anomalies recorded so far, and how many there were.
func (l *connLog) problems() ([]string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.anomalies...), l.nAnomalies
}

// ranges writes sorted numbers compactly: "3-7, 9, 12-40".
func ranges(ns []int) string {
	var b strings.Builder
	for i := 0; i < len(ns); {
		j := i
		for j+1 < len(ns) && ns[j+1] == ns[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		if b.Len() > 300 {
			b.WriteString("...")
			break
		}
		if j > i {
			fmt.Fprintf(&b, "%d-%d", ns[i], ns[j])
		} else {
			fmt.Fprintf(&b, "%d", ns[i])
		}
		i = j + 1
	}
	return b.String()
}

// expect is a range of one sender's numbers that a member must have
// received on its latest connection.
type expect struct {
	sender   string
	from, to int // inclusive; nothing when to < from
}

// lacking returns nil once every member's latest connection holds
// everything exp asks of it (a member is never asked for its own
// messages), else an error naming each (member, sender) pair with what is
// missing, and the anomalies seen so far.
func lacking(members []*member, exp func(*member) []expect) error {
	var lines []string
	for _, m := range members {
		l := m.last()
		for _, e := range exp(m) {
			if base, _, _ := strings.Cut(e.sender, "/"); base == m.uid || e.to < e.from {
				continue
			}
			if miss := l.missing(e.sender, e.from, e.to); len(miss) > 0 {
				lines = append(lines, fmt.Sprintf("%s on %s (connection %d) lacks %d of %s's %d..%d: %s",
					m.uid, m.srv.name, len(m.connLogs()), len(miss), e.sender, e.from, e.to, ranges(miss)))
			}
		}
	}
	if len(lines) == 0 {
		return nil
	}
	n := len(lines)
	if n > 12 {
		lines = append(lines[:12], "...")
	}
	msg := fmt.Sprintf("%d (member, sender) pairs incomplete:\n  %s", n, strings.Join(lines, "\n  "))
	if err := anomalies(members); err != nil {
		msg += "\n" + err.Error()
	}
	return errors.New(msg)
}

// anomalies returns an error listing what any connection of members
// received wrongly (duplicates, order, echoes, foreign frames), or nil.
func anomalies(members []*member) error {
	var lines []string
	for _, m := range members {
		for i, l := range m.connLogs() {
			list, n := l.problems()
			if n == 0 {
				continue
			}
			lines = append(lines, fmt.Sprintf("%s on %s, connection %d: %d anomalies, first: %s",
				m.uid, m.srv.name, i+1, n, strings.Join(list, "; ")))
		}
	}
	if len(lines) == 0 {
		return nil
	}
	return errors.New("anomalies:\n  " + strings.Join(lines, "\n  "))
}
