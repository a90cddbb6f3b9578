// Package centrifugo holds the Centrifugo v6 peer's configuration files and a
// check that they let an anonymous client connect, subscribe, publish and
// read history over ws://.../connection/websocket (JSON protocol v2).
package centrifugo

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func startCentrifugo(t *testing.T, config string, env ...string) string {
	bin, _ := filepath.Abs("../../.bin/centrifugo")
	if _, err := os.Stat(bin); err != nil {
		t.Skip("benchmarks/.bin/centrifugo not built (benchmarks/run builds it)")
	}
	port := freePort(t)
	cmd := exec.Command(bin, "-c", config, "--http_server.port", strconv.Itoa(port))
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	cmd.Stdout = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return "ws://127.0.0.1:" + strconv.Itoa(port) + "/connection/websocket"
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type client struct {
	t *testing.T
	c *websocket.Conn
}

func dial(t *testing.T, url string) *client {
	var c *websocket.Conn
	var err error
	for i := 0; i < 100; i++ {
		if c, _, err = websocket.DefaultDialer.Dial(url, nil); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t, c}
}

// cmd sends one command and returns the reply with that id, skipping pushes.
func (cl *client) cmd(id int, body string) map[string]json.RawMessage {
	cl.t.Helper()
	if err := cl.c.WriteMessage(websocket.TextMessage, []byte(`{"id":`+strconv.Itoa(id)+`,`+body+`}`)); err != nil {
		cl.t.Fatal(err)
	}
	for {
		cl.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, data, err := cl.c.ReadMessage()
		if err != nil {
			cl.t.Fatalf("read: %v", err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var m map[string]json.RawMessage
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				cl.t.Fatalf("bad reply %q", line)
			}
			if string(m["id"]) == strconv.Itoa(id) {
				if e, ok := m["error"]; ok {
					cl.t.Fatalf("command %s: error %s", body, e)
				}
				return m
			}
		}
	}
}

func (cl *client) push() string {
	cl.t.Helper()
	cl.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, data, err := cl.c.ReadMessage()
		if err != nil {
			cl.t.Fatalf("read push: %v", err)
		}
		if strings.Contains(string(data), `"push"`) {
			return string(data)
		}
	}
}

func TestConfig(t *testing.T) {
	url := startCentrifugo(t, "config.json")
	a, b := dial(t, url), dial(t, url)
	for _, cl := range []*client{a, b} {
		cl.cmd(1, `"connect":{}`)
		cl.cmd(2, `"subscribe":{"channel":"room"}`)
	}
	a.cmd(3, `"publish":{"channel":"room","data":{"m":"hello"}}`)
	if p := b.push(); !strings.Contains(p, `"hello"`) {
		t.Fatalf("push %s", p)
	}
}

func TestHistoryConfig(t *testing.T) {
	url := startCentrifugo(t, "config-history.json")
	a := dial(t, url)
	a.cmd(1, `"connect":{}`)
	for i := 0; i < 1000; i++ {
		a.cmd(10+i, `"publish":{"channel":"hist","data":{"n":`+strconv.Itoa(i)+`}}`)
	}
	b := dial(t, url)
	b.cmd(1, `"connect":{}`)
	h := b.cmd(2, `"history":{"channel":"hist","limit":1000}`)
	var hist struct {
		Publications []json.RawMessage `json:"publications"`
	}
	if err := json.Unmarshal(h["history"], &hist); err != nil {
		t.Fatal(err)
	}
	if len(hist.Publications) != 1000 {
		t.Fatalf("history has %d publications, want 1000", len(hist.Publications))
	}
	// Recovery from the start of the stream on subscribe replays history too
	// (the way loadgen's history scenario joins): force_recovery makes every
	// subscribe reply carry the epoch without the client asking for it.
	c := dial(t, url)
	c.cmd(1, `"connect":{}`)
	s := c.cmd(2, `"subscribe":{"channel":"hist"}`)
	var sub struct {
		Epoch  string `json:"epoch"`
		Offset int    `json:"offset"`
	}
	json.Unmarshal(s["subscribe"], &sub)
	d := dial(t, url)
	d.cmd(1, `"connect":{}`)
	r := d.cmd(2, `"subscribe":{"channel":"hist","recover":true,"offset":0,"epoch":"`+sub.Epoch+`"}`)
	var rec struct {
		Recovered    bool              `json:"recovered"`
		Publications []json.RawMessage `json:"publications"`
	}
	json.Unmarshal(r["subscribe"], &rec)
	if sub.Epoch == "" || !rec.Recovered || len(rec.Publications) != 1000 {
		t.Fatalf("recovery: epoch %q recovered %v, %d publications; reply %.200s", sub.Epoch, rec.Recovered, len(rec.Publications), r["subscribe"])
	}
}

// TestNATSConfig: two nodes with config-nats.json on one nats-server (the
// nats scenario's centrifugo-natsN), the URL from the environment as
// benchmarks/run gives it: a publication on one node reaches a subscriber
// on the other.
func TestNATSConfig(t *testing.T) {
	natsd, _ := filepath.Abs("../../.bin/nats-server")
	if _, err := os.Stat(natsd); err != nil {
		t.Skip("benchmarks/.bin/nats-server not built (benchmarks/run nats builds it)")
	}
	port := freePort(t)
	ns := exec.Command(natsd, "-a", "127.0.0.1", "-p", strconv.Itoa(port))
	ns.Stderr = os.Stderr
	if err := ns.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Process.Kill(); ns.Wait() })
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
			break
		}
		if i == 100 {
			t.Fatalf("nats-server: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	env := "CENTRIFUGO_BROKER_NATS_URL=nats://127.0.0.1:" + strconv.Itoa(port)
	a, b := dial(t, startCentrifugo(t, "config-nats.json", env)), dial(t, startCentrifugo(t, "config-nats.json", env))
	for _, cl := range []*client{a, b} {
		cl.cmd(1, `"connect":{}`)
		cl.cmd(2, `"subscribe":{"channel":"room"}`)
	}
	// The other node's subscription reaches NATS on its own time: publish
	// until one arrives (a gorilla read that timed out cannot go on, so one
	// goroutine reads b throughout).
	got := make(chan string, 64)
	go func() {
		b.c.SetReadDeadline(time.Now().Add(15 * time.Second))
		for {
			_, data, err := b.c.ReadMessage()
			if err != nil {
				close(got)
				return
			}
			got <- string(data)
		}
	}()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < 50; i++ {
		a.cmd(3+i, `"publish":{"channel":"room","data":{"m":"across"}}`)
	wait:
		for {
			select {
			case m, ok := <-got:
				if !ok {
					t.Fatal("node b closed the connection")
				}
				if strings.Contains(m, `"across"`) {
					return
				}
			case <-tick.C:
				break wait
			}
		}
	}
	t.Fatal("no publication across the nodes within 10 s")
}
