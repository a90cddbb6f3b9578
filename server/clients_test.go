package server_test

// Third-party clients (gorilla/websocket, coder/websocket) and the raw
// client behind one interface, and payload helpers for sequence checks.

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	coderws "github.com/coder/websocket"
	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

// ---------------------------------------------------------------------------
// third-party clients behind one interface

// client is a WebSocket client under test: our raw client, gorilla or coder.
type client interface {
	Send(op ws.OpCode, p []byte) error
	Recv(d time.Duration) (message, error)
	Close() error
}

func (c *rawClient) Send(op ws.OpCode, p []byte) error     { return c.send(op, p) }
func (c *rawClient) Recv(d time.Duration) (message, error) { return c.recv(d) }

type gorillaClient struct{ c *websocket.Conn }

// dialGorilla joins with gorilla/websocket; protocols defaults to
// [mles-websocket].
func (ts *testServer) dialGorilla(t testing.TB, protocols []string, tlsCfg *tls.Config) (*websocket.Conn, *http.Response, error) {
	if protocols == nil {
		protocols = []string{subprotocol}
	}
	if tlsCfg == nil {
		tlsCfg = clientTLSConfig(t)
	}
	d := websocket.Dialer{
		Subprotocols:     protocols,
		TLSClientConfig:  tlsCfg,
		HandshakeTimeout: shortWait,
		ReadBufferSize:   64 << 10,
		WriteBufferSize:  64 << 10,
	}
	return d.Dial(ts.url(), nil)
}

func (ts *testServer) joinGorilla(t testing.TB, uid, channel string) *gorillaClient {
	t.Helper()
	c, resp, err := ts.dialGorilla(t, nil, nil)
	if err != nil {
		t.Fatalf("gorilla dial: %v (resp %v)", err, resp)
	}
	t.Cleanup(func() { c.Close() })
	if got := c.Subprotocol(); got != subprotocol {
		t.Fatalf("gorilla negotiated %q, want %q", got, subprotocol)
	}
	if err := c.WriteMessage(websocket.TextMessage, headerJSON(uid, channel)); err != nil {
		t.Fatalf("gorilla header: %v", err)
	}
	return &gorillaClient{c}
}

func (g *gorillaClient) Send(op ws.OpCode, p []byte) error {
	mt := websocket.TextMessage
	if op == ws.OpBinary {
		mt = websocket.BinaryMessage
	}
	return g.c.WriteMessage(mt, p)
}

func (g *gorillaClient) Recv(d time.Duration) (message, error) {
	_ = g.c.SetReadDeadline(time.Now().Add(d))
	mt, p, err := g.c.ReadMessage()
	if err != nil {
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return message{}, &closeError{ws.StatusCode(ce.Code), ce.Text}
		}
		return message{}, err
	}
	op := ws.OpText
	if mt == websocket.BinaryMessage {
		op = ws.OpBinary
	}
	return message{op, p}, nil
}

func (g *gorillaClient) Close() error { return g.c.Close() }

type coderClient struct{ c *coderws.Conn }

func (ts *testServer) coderOptions(t testing.TB) *coderws.DialOptions {
	o := &coderws.DialOptions{Subprotocols: []string{subprotocol}}
	if ts.tls {
		o.HTTPClient = &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLSConfig(t)}}
	}
	return o
}

func (ts *testServer) joinCoder(t testing.TB, uid, channel string) *coderClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), shortWait)
	defer cancel()
	c, _, err := coderws.Dial(ctx, ts.url(), ts.coderOptions(t))
	if err != nil {
		t.Fatalf("coder dial: %v", err)
	}
	t.Cleanup(func() { c.CloseNow() })
	c.SetReadLimit(64 << 20)
	if got := c.Subprotocol(); got != subprotocol {
		t.Fatalf("coder negotiated %q, want %q", got, subprotocol)
	}
	if err := c.Write(ctx, coderws.MessageText, headerJSON(uid, channel)); err != nil {
		t.Fatalf("coder header: %v", err)
	}
	return &coderClient{c}
}

func (p *coderClient) Send(op ws.OpCode, b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), shortWait)
	defer cancel()
	mt := coderws.MessageText
	if op == ws.OpBinary {
		mt = coderws.MessageBinary
	}
	return p.c.Write(ctx, mt, b)
}

func (p *coderClient) Recv(d time.Duration) (message, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	mt, b, err := p.c.Read(ctx)
	if err != nil {
		var ce coderws.CloseError
		if errors.As(err, &ce) {
			return message{}, &closeError{ws.StatusCode(ce.Code), ce.Reason}
		}
		return message{}, err
	}
	op := ws.OpText
	if mt == coderws.MessageBinary {
		op = ws.OpBinary
	}
	return message{op, b}, nil
}

func (p *coderClient) Close() error { return p.c.CloseNow() }

// isJoinFrame tells a stored join frame replayed from history (text
// {"uid":...,"channel":...}) from a data message of the tests.
func isJoinFrame(m message) bool {
	if m.op != ws.OpText {
		return false
	}
	var j map[string]any
	if json.Unmarshal(m.data, &j) != nil {
		return false
	}
	_, u := j["uid"]
	_, c := j["channel"]
	return u && c
}

// recvData is recv skipping stored join frames (from history).
func (c *rawClient) recvData(d time.Duration) (message, error) {
	for {
		m, err := c.recv(d)
		if err != nil || !isJoinFrame(m) {
			return m, err
		}
	}
}

// expectData is expectMsg skipping stored join frames: for tests where
// which joins precede a message in history is not the point.
func (c *rawClient) expectData(t testing.TB, op ws.OpCode, data string) {
	t.Helper()
	m, err := c.recvData(shortWait)
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	if m.op != op || string(m.data) != data {
		t.Fatalf("got %v %q, want %v %q", m.op, trunc(m.data), op, trunc([]byte(data)))
	}
}

// recvUntil reads deliveries until (op, data) arrives, skipping history
// and other traffic; a close or a timeout fails the test.
func (c *rawClient) recvUntil(t testing.TB, op ws.OpCode, data string) {
	t.Helper()
	deadline := time.Now().Add(shortWait)
	for {
		m, err := c.recv(time.Until(deadline))
		if err != nil {
			t.Fatalf("waiting for %v %q: %v", op, trunc([]byte(data)), err)
		}
		if m.op == op && string(m.data) == data {
			return
		}
	}
}

// expectClientMsg asserts p's next delivery, after any stored join frames,
// is exactly (op, data).
func expectClientMsg(t testing.TB, name string, p client, op ws.OpCode, data []byte) {
	t.Helper()
	var m message
	var err error
	for {
		m, err = p.Recv(shortWait)
		if err != nil || !isJoinFrame(m) {
			break
		}
	}
	if err != nil {
		t.Fatalf("%s: recv: %v", name, err)
	}
	if m.op != op || string(m.data) != string(data) {
		t.Fatalf("%s: got %v %q, want %v %q", name, m.op, trunc(m.data), op, trunc(data))
	}
}

// seqPayload encodes (publisher, seq) plus padding up to size bytes.
func seqPayload(pub byte, seq uint32, size int) []byte {
	if size < 5 {
		size = 5
	}
	b := make([]byte, size)
	b[0] = pub
	binary.BigEndian.PutUint32(b[1:5], seq)
	for i := 5; i < size; i++ {
		b[i] = byte(seq) + byte(i)
	}
	return b
}

func parseSeq(b []byte) (pub byte, seq uint32, ok bool) {
	if len(b) < 5 {
		return 0, 0, false
	}
	pub, seq = b[0], binary.BigEndian.Uint32(b[1:5])
	for i := 5; i < len(b); i++ {
		if b[i] != byte(seq)+byte(i) {
			return pub, seq, false
		}
	}
	return pub, seq, true
}
