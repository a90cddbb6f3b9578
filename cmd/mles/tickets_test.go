package main

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mles/mles/internal/mlestest"
)

// TestTicketKeysAcrossRestart: with --tls-ticket-keys a client resumes its
// TLS session with a restarted server (and with the key rotated to second
// place); without the file the restarted server cannot read the ticket
// and the client pays a full handshake.
func TestTicketKeysAcrossRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	mles := mlestest.BuildBin(t, t.TempDir(), "mles", "github.com/mles/mles/cmd/mles")
	dir := t.TempDir()
	key := func() string {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b)
	}
	k1, k2 := key(), key()
	keys := filepath.Join(dir, "tickets")
	writeKeys := func(lines ...string) {
		t.Helper()
		var b []byte
		for _, l := range lines {
			b = append(append(b, l...), '\n')
		}
		if err := os.WriteFile(keys, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeKeys("# ticket keys", k1)

	port := mlestest.FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	start := func(extra ...string) *mlestest.Proc {
		t.Helper()
		return mlestest.StartProc(t, mles, addr, nil, nil, append([]string{"--addr", "127.0.0.1", "-p", strconv.Itoa(port), "--reactors", "1"}, extra...)...)
	}
	stop := func(p *mlestest.Proc) {
		t.Helper()
		_ = p.Cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.Done:
		case <-time.After(10 * time.Second):
			t.Fatal("server did not stop")
		}
	}
	cache := tls.NewLRUClientSessionCache(4)
	// resumed dials, joins and exchanges nothing more than the upgrade,
	// which carries the server's session ticket to the client.
	resumed := func() bool {
		t.Helper()
		d := websocket.Dialer{
			Subprotocols:     []string{"mles-websocket"},
			TLSClientConfig:  &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", ClientSessionCache: cache},
			HandshakeTimeout: 10 * time.Second,
		}
		c, _, err := d.Dial("wss://"+addr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.WriteMessage(websocket.TextMessage, []byte(`{"uid":"t","channel":"tickets"}`)); err != nil {
			t.Fatal(err)
		}
		// A read gives the client the ticket sent after the handshake.
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, _, _ = c.ReadMessage()
		return c.UnderlyingConn().(*tls.Conn).ConnectionState().DidResume
	}

	p := start("--tls-ticket-keys", keys)
	if resumed() {
		t.Fatal("the first connection resumed a session")
	}
	if !resumed() {
		t.Fatal("the second connection to the same process did not resume")
	}
	stop(p)
	writeKeys(k2, k1) // rotated: a new key first, the old one still decrypts
	p = start("--tls-ticket-keys", keys)
	if !resumed() {
		t.Fatal("no resumption after a restart with the (rotated) ticket keys")
	}
	stop(p)
	p = start()
	if resumed() {
		t.Fatal("resumed after a restart without ticket keys: the test cannot tell them apart")
	}
	stop(p)
}
