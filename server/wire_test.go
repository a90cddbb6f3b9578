package server_test

// Acceptance 1 (issue 2): wire behaviour of SPEC 1.1-1.3 over TLS and
// plain, with third-party clients (gorilla/websocket, coder/websocket) and
// raw crafted frames.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mles/mles/server"
)

// TestFanOut checks SPEC 1.3: a message goes to every other member of
// the channel with its type, never back to the sender, never to another
// channel. Members are gorilla, coder and raw clients.
func TestFanOut(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, nil)
		clients := map[string]client{
			"gorilla": ts.joinGorilla(t, "g", "fan"),
			"coder":   ts.joinCoder(t, "c", "fan"),
			"raw":     ts.join(t, "r", "fan"),
		}
		// Two members of another channel watch for leaks across channels.
		x := ts.join(t, "x", "fan-other")
		y := ts.join(t, "y", "fan-other")
		ts.waitMembers(t, 5)

		order := []string{"gorilla", "coder", "raw"}
		for _, from := range order {
			text := []byte("text from " + from)
			bin := []byte{0, 1, 2, 0xff, byte(len(from))}
			if err := clients[from].Send(ws.OpText, text); err != nil {
				t.Fatalf("%s send: %v", from, err)
			}
			if err := clients[from].Send(ws.OpBinary, bin); err != nil {
				t.Fatalf("%s send: %v", from, err)
			}
			// Every other member gets both, in order and with their type.
			// The sender gets nothing: its next delivery is checked to be
			// the next sender's message below.
			for _, to := range order {
				if to == from {
					continue
				}
				expectClientMsg(t, from+"->"+to, clients[to], ws.OpText, text)
				expectClientMsg(t, from+"->"+to, clients[to], ws.OpBinary, bin)
			}
		}
		// The last sender (raw) has had nothing yet: a marker from gorilla
		// must be its very next delivery (no echo of its own two messages).
		if err := clients["gorilla"].Send(ws.OpText, []byte("marker")); err != nil {
			t.Fatal(err)
		}
		clients["raw"].(*rawClient).expectData(t, ws.OpText, "marker")
		expectClientMsg(t, "coder", clients["coder"], ws.OpText, []byte("marker"))

		// Everything in "fan" has been delivered; x's first delivery must
		// be y's marker, not anything from "fan".
		y.mustSend(t, ws.OpText, []byte("other marker"))
		x.expectData(t, ws.OpText, "other marker")
	})
}

// TestControlFrames checks SPEC 1.3: a ping gets a pong with the same
// payload, to the sender only; pings and pongs are never forwarded.
func TestControlFrames(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, nil)
		a := ts.joinSeq(t, "a", "ctl")
		b := ts.joinSeq(t, "b", "ctl")
		// b's history: a's join frame, before anything else.
		expectJoinFrame(t, b.mustRecv(t), "a", "ctl")

		payloads := [][]byte{
			[]byte("hello-ping"),            // ordinary payload
			{},                              // empty ping
			bytes.Repeat([]byte{0xab}, 125), // largest legal control payload
		}
		for _, p := range payloads {
			a.mustSend(t, ws.OpPing, p)
			f, err := a.nextFrame(shortWait)
			if err != nil {
				t.Fatalf("waiting for pong: %v", err)
			}
			if f.Header.OpCode != ws.OpPong || !f.Header.Fin || !bytes.Equal(f.Payload, p) {
				t.Fatalf("got %v fin=%v %q, want pong %q", f.Header.OpCode, f.Header.Fin, trunc(f.Payload), trunc(p))
			}
		}
		// An unsolicited pong is ignored: no answer, not forwarded.
		a.mustSend(t, ws.OpPong, []byte("unsolicited"))
		a.mustSend(t, ws.OpText, []byte("after"))
		f, err := b.nextFrame(shortWait)
		if err != nil {
			t.Fatal(err)
		}
		if f.Header.OpCode != ws.OpText || string(f.Payload) != "after" {
			t.Fatalf("b's first frame is %v %q, want text \"after\" (control frame forwarded?)", f.Header.OpCode, trunc(f.Payload))
		}
		b.mustSend(t, ws.OpText, []byte("back"))
		f, err = a.nextFrame(shortWait)
		if err != nil {
			t.Fatal(err)
		}
		if f.Header.OpCode != ws.OpText || string(f.Payload) != "back" {
			t.Fatalf("a's next frame is %v %q, want text \"back\"", f.Header.OpCode, trunc(f.Payload))
		}
	})
}

// TestFragmented checks SPEC 1.3: fragments are reassembled per sender,
// control frames may come between them, and each delivery is one frame.
func TestFragmented(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, nil)
		a := ts.joinSeq(t, "a", "frag")
		b := ts.joinSeq(t, "b", "frag")
		expectJoinFrame(t, b.mustRecv(t), "a", "frag")
		g := ts.joinGorilla(t, "g", "frag")
		ts.waitMembers(t, 3)

		// "hello wörld": the two bytes of ö are split across fragments, so
		// UTF-8 must be checked over the message, not per fragment.
		var w bytes.Buffer
		w.Write(maskedFrame(ws.OpText, false, 0, []byte("hel")))
		w.Write(maskedFrame(ws.OpPing, true, 0, []byte("mid")))
		w.Write(maskedFrame(ws.OpContinuation, false, 0, []byte("lo w\xc3")))
		w.Write(maskedFrame(ws.OpContinuation, false, 0, nil)) // empty fragment
		w.Write(maskedFrame(ws.OpPong, true, 0, []byte("pong between")))
		w.Write(maskedFrame(ws.OpContinuation, true, 0, []byte("\xb6rld")))
		if err := a.write(w.Bytes()); err != nil {
			t.Fatal(err)
		}
		f, err := a.nextFrame(shortWait)
		if err != nil || f.Header.OpCode != ws.OpPong || string(f.Payload) != "mid" {
			t.Fatalf("want pong \"mid\" between fragments, got %v %q (%v)", f.Header.OpCode, f.Payload, err)
		}
		want := "hello w\u00f6rld"
		f, err = b.nextFrame(shortWait)
		if err != nil {
			t.Fatal(err)
		}
		if f.Header.OpCode != ws.OpText || !f.Header.Fin || string(f.Payload) != want {
			t.Fatalf("b got %v fin=%v %q, want one text frame %q", f.Header.OpCode, f.Header.Fin, f.Payload, want)
		}
		expectClientMsg(t, "gorilla", g, ws.OpText, []byte(want))

		// Binary in three fragments, each written one byte per Write
		// (every split point of the frame parser and, over TLS, one
		// record per byte).
		bin := []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}
		var raw []byte
		raw = append(raw, maskedFrame(ws.OpBinary, false, 0, bin[:3])...)
		raw = append(raw, maskedFrame(ws.OpContinuation, false, 0, bin[3:6])...)
		raw = append(raw, maskedFrame(ws.OpContinuation, true, 0, bin[6:])...)
		for i := range raw {
			if err := a.write(raw[i : i+1]); err != nil {
				t.Fatal(err)
			}
		}
		f, err = b.nextFrame(shortWait)
		if err != nil {
			t.Fatal(err)
		}
		if f.Header.OpCode != ws.OpBinary || !f.Header.Fin || !bytes.Equal(f.Payload, bin) {
			t.Fatalf("b got %v fin=%v %v, want one binary frame %v", f.Header.OpCode, f.Header.Fin, f.Payload, bin)
		}
		expectClientMsg(t, "gorilla", g, ws.OpBinary, bin)
	})
}

// TestProtocolErrors checks that each RFC 6455 violation closes the
// connection with its code (SPEC 1.3), at once.
func TestProtocolErrors(t *testing.T) {
	const maxMsg = 1024
	closeBody := func(code uint16, reason string) []byte {
		b := make([]byte, 2+len(reason))
		binary.BigEndian.PutUint16(b, code)
		copy(b[2:], reason)
		return b
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	cases := []struct {
		name string
		// beforeJoin sends the bytes instead of the header frame.
		beforeJoin bool
		bytes      []byte
		want       ws.StatusCode
		reason     string // the codec error's own short reason
	}{
		// RFC 6455 5.1: a client frame must be masked.
		{name: "unmasked", bytes: frameBytes(ws.NewTextFrame([]byte("x")), false), want: 1002, reason: "unmasked client frame"},
		// The same in the header state.
		{name: "unmasked-header", beforeJoin: true, bytes: frameBytes(ws.NewTextFrame([]byte(`{"uid":"u","channel":"c"}`)), false), want: 1002, reason: "unmasked client frame"},
		// RFC 6455 5.2: RSV bits without a negotiated extension.
		{name: "rsv1", bytes: maskedFrame(ws.OpText, true, ws.Rsv(true, false, false), []byte("x")), want: 1002, reason: "reserved bits set"},
		{name: "rsv2", bytes: maskedFrame(ws.OpBinary, true, ws.Rsv(false, true, false), []byte("x")), want: 1002, reason: "reserved bits set"},
		{name: "rsv3-ping", bytes: maskedFrame(ws.OpPing, true, ws.Rsv(false, false, true), nil), want: 1002, reason: "reserved bits set"},
		// Reserved data opcode 0x3 and control opcode 0xB.
		{name: "opcode-3", bytes: maskedFrame(ws.OpCode(0x3), true, 0, []byte("x")), want: 1002, reason: "reserved opcode"},
		{name: "opcode-b", bytes: maskedFrame(ws.OpCode(0xb), true, 0, nil), want: 1002, reason: "reserved opcode"},
		// RFC 6455 5.5: control payload at most 125 bytes, never fragmented.
		{name: "ping-126", bytes: maskedFrame(ws.OpPing, true, 0, make([]byte, 126)), want: 1002, reason: "control frame too long"},
		{name: "ping-fragmented", bytes: maskedFrame(ws.OpPing, false, 0, []byte("x")), want: 1002, reason: "fragmented control frame"},
		{name: "close-1-byte", bytes: maskedFrame(ws.OpClose, true, 0, []byte{3}), want: 1002, reason: "close payload of 1 byte"},
		// Close codes that must never be on the wire (RFC 6455 7.4.1).
		{name: "close-1005", bytes: maskedFrame(ws.OpClose, true, 0, closeBody(1005, "")), want: 1002, reason: "invalid close code"},
		{name: "close-999", bytes: maskedFrame(ws.OpClose, true, 0, closeBody(999, "")), want: 1002, reason: "invalid close code"},
		// RFC 6455 5.4: continuation with nothing to continue.
		{name: "continuation-first", bytes: maskedFrame(ws.OpContinuation, true, 0, []byte("x")), want: 1002, reason: "continuation frame without a message"},
		// A new data frame while a fragmented message is open.
		{name: "data-inside-fragments", bytes: cat(
			maskedFrame(ws.OpText, false, 0, []byte("a")),
			maskedFrame(ws.OpText, true, 0, []byte("b"))), want: 1002, reason: "new message inside a fragmented message"},
		// RFC 6455 8.1: text must be UTF-8.
		{name: "utf8", bytes: maskedFrame(ws.OpText, true, 0, []byte("ok\xff\xfe")), want: 1007, reason: "invalid UTF-8"},
		{name: "utf8-truncated", bytes: maskedFrame(ws.OpText, true, 0, []byte("abc\xc3")), want: 1007, reason: "invalid UTF-8"},
		{name: "utf8-surrogate", bytes: maskedFrame(ws.OpText, true, 0, []byte("\xed\xa0\x80")), want: 1007, reason: "invalid UTF-8"},
		{name: "utf8-fragmented", bytes: cat(
			maskedFrame(ws.OpText, false, 0, []byte("ok")),
			maskedFrame(ws.OpContinuation, true, 0, []byte("\xc0\xaf"))), want: 1007, reason: "invalid UTF-8"},
		{name: "utf8-close-reason", bytes: maskedFrame(ws.OpClose, true, 0, closeBody(1000, "\xff")), want: 1007, reason: "invalid UTF-8"},
		// Over --max-message: one frame, and a message in fragments.
		{name: "too-big", bytes: maskedFrame(ws.OpBinary, true, 0, make([]byte, maxMsg+1)), want: 1009, reason: "message too big"},
		// A header frame over its own limit (64 KiB) is a bad header:
		// 1008, not 1009, known from the frame header alone (sent with
		// the start of the payload only: the server closes before the
		// rest could be written).
		{name: "header-too-big", beforeJoin: true, bytes: maskedFrame(ws.OpText, true, 0, make([]byte, 64<<10+1))[:100], want: 1008, reason: "header field too long"},
		{name: "too-big-fragments", bytes: cat(
			maskedFrame(ws.OpBinary, false, 0, make([]byte, 600)),
			maskedFrame(ws.OpContinuation, true, 0, make([]byte, 600))), want: 1009, reason: "message too big"},
	}
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, func(o *server.Options) { o.MaxMessage = maxMsg })
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c := ts.upgraded(t, dialConfig{})
				if !tc.beforeJoin {
					c.mustSend(t, ws.OpText, headerJSON(fmt.Sprintf("u%d", i), "errors"))
				}
				start := time.Now()
				if err := c.write(tc.bytes); err != nil {
					t.Fatal(err)
				}
				reason := c.expectClose(t, tc.want, quickClose)
				if d := time.Since(start); d > quickClose {
					t.Fatalf("close took %v", d)
				}
				if reason != tc.reason {
					t.Fatalf("close reason %q, want %q", reason, tc.reason)
				}
			})
		}
		// A message of exactly --max-message bytes is fine.
		t.Run("max-size-ok", func(t *testing.T) {
			a := ts.join(t, "big-a", "maxok")
			b := ts.join(t, "big-b", "maxok")
			ts.waitMembers(t, 2)
			p := bytes.Repeat([]byte{'z'}, maxMsg)
			a.mustSend(t, ws.OpBinary, p)
			b.expectData(t, ws.OpBinary, string(p))
		})
	})
}

// TestInvalidHeader checks SPEC 1.2: an invalid header frame closes the
// connection at once with 1008 and creates no channel.
func TestInvalidHeader(t *testing.T) {
	long := strings.Repeat("u", 1025)
	cases := []struct {
		name   string
		op     ws.OpCode
		body   string
		reason string // the codec error's short reason
	}{
		// The header must be a text frame.
		{name: "binary", op: ws.OpBinary, body: `{"uid":"u","channel":"binary"}`, reason: "header must be a text message"},
		// Not JSON at all.
		{name: "not-json", op: ws.OpText, body: `hello channel not-json`, reason: "header is not a JSON object"},
		// An empty message.
		{name: "empty", op: ws.OpText, body: ``, reason: "header is not a JSON object"},
		// JSON, but not an object.
		{name: "array", op: ws.OpText, body: `["u","array"]`, reason: "header is not a JSON object"},
		// Truncated JSON.
		{name: "truncated", op: ws.OpText, body: `{"uid":"u","channel":"truncated"`, reason: "header is not a JSON object"},
		// uid missing.
		{name: "no-uid", op: ws.OpText, body: `{"channel":"no-uid"}`, reason: "invalid uid"},
		// channel missing.
		{name: "no-channel", op: ws.OpText, body: `{"uid":"no-channel"}`, reason: "invalid channel"},
		// Empty uid.
		{name: "empty-uid", op: ws.OpText, body: `{"uid":"","channel":"empty-uid"}`, reason: "invalid uid"},
		// Empty channel.
		{name: "empty-channel", op: ws.OpText, body: `{"uid":"u","channel":""}`, reason: "invalid channel"},
		// Non-ASCII uid and channel.
		{name: "non-ascii-uid", op: ws.OpText, body: `{"uid":"älice","channel":"non-ascii-uid"}`, reason: "invalid uid"},
		{name: "non-ascii-channel", op: ws.OpText, body: `{"uid":"u","channel":"kanäl"}`, reason: "invalid channel"},
		// Wrong types.
		{name: "uid-number", op: ws.OpText, body: `{"uid":42,"channel":"uid-number"}`, reason: "invalid uid"},
		{name: "channel-null", op: ws.OpText, body: `{"uid":"u","channel":null}`, reason: "invalid channel"},
		{name: "channel-object", op: ws.OpText, body: `{"uid":"u","channel":{"x":1}}`, reason: "invalid channel"},
		{name: "auth-number", op: ws.OpText, body: `{"uid":"u","channel":"auth-number","auth":7}`, reason: "invalid auth"},
		// uid over --max-uid (1 KiB default).
		{name: "uid-too-long", op: ws.OpText, body: `{"uid":"` + long + `","channel":"uid-too-long"}`, reason: "header field too long"},
	}
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, func(o *server.Options) { o.HeaderTimeout = 20 * time.Second })
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				before := ts.Stats().Channels
				c := ts.upgraded(t, dialConfig{})
				start := time.Now()
				c.mustSend(t, tc.op, []byte(tc.body))
				reason := c.expectClose(t, 1008, quickClose)
				if d := time.Since(start); d > quickClose {
					t.Fatalf("1008 took %v", d)
				}
				if after := ts.Stats().Channels; after != before {
					t.Fatalf("Stats().Channels %d -> %d: an invalid header created a channel", before, after)
				}
				if got := ts.Stats().Members; got != 0 {
					t.Fatalf("Stats().Members = %d after refused header", got)
				}
				// A short reason for people: no Go package prefix.
				if reason == "" || strings.Contains(reason, ":") || len(reason) > 40 {
					t.Fatalf("close reason %q: want a short reason without a package prefix", reason)
				}
				if reason != tc.reason {
					t.Fatalf("close reason %q, want %q", reason, tc.reason)
				}
			})
		}
	})
}

// TestCloseEcho checks SPEC 1.3: a client close is echoed with its code
// and then the connection is closed.
func TestCloseEcho(t *testing.T) {
	cases := []struct {
		name string
		code ws.StatusCode // 0: empty close payload
	}{
		{name: "normal", code: 1000},      // normal closure
		{name: "going-away", code: 1001},  // browser tab closed
		{name: "application", code: 4001}, // private-use code
		{name: "registered", code: 3000},  // IANA-registered range
		{name: "empty-payload", code: 0},  // no status code at all
	}
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, nil)
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c := ts.join(t, fmt.Sprintf("closer%d", i), "close-echo")
				var body []byte
				if tc.code != 0 {
					body = ws.NewCloseFrameBody(tc.code, "bye")
				}
				c.mustSend(t, ws.OpClose, body)
				got, reason, err := c.awaitClose(shortWait)
				if err != nil {
					t.Fatalf("close echo: %v", err)
				}
				want := tc.code
				if tc.code == 0 && got == 1000 {
					want = 1000 // an empty close may be answered with 1000
				}
				if got != want {
					t.Fatalf("echo code %d (%q), want %d", got, reason, want)
				}
			})
		}
		t.Run("members-released", func(t *testing.T) {
			ts.waitMembers(t, 0)
		})
	})
}

// TestEarlyFrames checks SPEC 1.1: bytes sent in the same write as the
// upgrade request (the header frame and a first message) are not lost.
func TestEarlyFrames(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, nil)
		b := ts.join(t, "b", "early")
		ts.waitMembers(t, 1)
		extra := append(maskedFrame(ws.OpText, true, 0, headerJSON("a", "early")),
			maskedFrame(ws.OpBinary, true, 0, []byte("first message"))...)
		a, err := ts.dialUpgrade(dialConfig{extra: extra})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		if a.resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d", a.resp.StatusCode)
		}
		b.expectMsg(t, ws.OpBinary, "first message")
		b.mustSend(t, ws.OpText, []byte("reply"))
		a.expectData(t, ws.OpText, "reply")
	})
}

// TestShutdown checks that Shutdown sends close 1001 to joined clients,
// is idempotent and stops accepting.
func TestShutdown(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, nil)
		r := ts.join(t, "r", "bye")
		g := ts.joinGorilla(t, "g", "bye")
		h := ts.upgraded(t, dialConfig{}) // upgraded, no header yet
		ts.waitMembers(t, 2)

		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			done <- ts.Shutdown(ctx)
		}()
		r.expectClose(t, 1001, shortWait)
		for {
			// Skip g's history (r's join frame).
			msg, err := g.Recv(shortWait)
			if err == nil && isJoinFrame(msg) {
				continue
			}
			if err == nil {
				t.Fatalf("gorilla got %q, want close 1001", msg.data)
			}
			if ce := (*closeError)(nil); !errors.As(err, &ce) || ce.code != 1001 {
				t.Fatalf("gorilla: %v, want close 1001", err)
			}
			break
		}
		if code, _, err := h.awaitClose(shortWait); err != nil && code == 0 {
			t.Fatalf("upgraded client: %v", err)
		} else if code != 1001 {
			t.Fatalf("upgraded client close %d, want 1001", code)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("Shutdown did not return")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := ts.Shutdown(ctx); err != nil {
			t.Fatalf("second Shutdown: %v", err)
		}
		if c, err := net.DialTimeout("tcp", ts.addr, time.Second); err == nil {
			c.Close()
			t.Fatal("server still accepts after Shutdown")
		}
	})
}
