package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mles/mles/internal/mlestest"
	"github.com/mles/mles/internal/poll"
)

// TestNATSDemo: deploy/nats-demo.sh, the one-command local cluster of
// README's "Scaling out on NATS", starts three NATS nodes and three mles
// servers on loopback; a member on the first server and one on the third
// exchange messages through the cluster (a third-party client,
// gorilla/websocket); Ctrl-C (SIGINT to the script) stops everything.
func TestNATSDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a NATS cluster and three servers")
	}
	work := t.TempDir()
	mles := mlestest.BuildBin(t, work, "mles", "github.com/mles/mles/cmd/mles")
	nats := mlestest.BuildBin(t, work, "nats-server", "github.com/nats-io/nats-server/v2")
	ports := func() string {
		return fmt.Sprintf("%d %d %d", mlestest.FreePort(t), mlestest.FreePort(t), mlestest.FreePort(t))
	}
	mlesPorts := ports()
	cmd := exec.Command("bash", "../../deploy/nats-demo.sh", "--", "--plain")
	cmd.Env = append(os.Environ(), "DEMO_NATS_PORTS="+ports(), "DEMO_ROUTE_PORTS="+ports(),
		"DEMO_MONITOR_PORTS="+ports(), "DEMO_MLES_PORTS="+mlesPorts, "DEMO_DIR="+t.TempDir(),
		"DEMO_NATS_BIN="+nats, "DEMO_MLES_BIN="+mles)
	out := &mlestest.LockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("nats-demo.sh output:\n%s", mlestest.Tail(out.String(), 4000))
		}
	})
	p := strings.Fields(mlesPorts)
	dialer := websocket.Dialer{Subprotocols: []string{"mles-websocket"}, HandshakeTimeout: 5 * time.Second}
	join := func(port, uid string) (*websocket.Conn, error) {
		c, _, err := dialer.Dial("ws://127.0.0.1:"+port+"/", nil)
		if err != nil {
			return nil, err
		}
		return c, c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"uid":%q,"channel":"demo"}`, uid))
	}
	var a, c *websocket.Conn
	poll.CheckFor(t, 90*time.Second, 100*time.Millisecond, func() error {
		select {
		case err := <-done:
			t.Fatalf("nats-demo.sh exited: %v", err)
		default:
		}
		var err error
		if a, err = join(p[0], "alice"); err != nil {
			return err
		}
		if c, err = join(p[2], "carol"); err != nil {
			a.Close()
			return err
		}
		return nil
	})
	defer a.Close()
	defer c.Close()
	got := make(chan string, 64)
	go func() {
		for {
			_, m, err := c.ReadMessage()
			if err != nil {
				close(got)
				return
			}
			got <- string(m)
		}
	}()
	// Alice sends until carol has one (her server may still be linking
	// the channel); any one of them proves the path.
	poll.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if err := a.WriteMessage(websocket.TextMessage, []byte("hello from alice")); err != nil {
			t.Fatal(err)
		}
		timeout := time.After(500 * time.Millisecond)
		for {
			select {
			case m, ok := <-got:
				if !ok {
					t.Fatal("carol's connection closed")
				}
				if m == "hello from alice" {
					return nil
				}
			case <-timeout:
				return fmt.Errorf("carol has nothing from alice yet")
			}
		}
	})
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("nats-demo.sh did not stop within 30 s of SIGINT")
	}
}
