package server_test

// Acceptance 1 (issue 2), the opening handshake of SPEC 1.1: subprotocol
// negotiation and request validation, with raw requests and third-party
// clients.

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	coderws "github.com/coder/websocket"
	"github.com/gobwas/ws"

	"github.com/mles/mles/codec"
	"github.com/mles/mles/internal/mlestest"
)

// TestSubprotocol checks SPEC 1.1: mles-websocket is required, accepted
// inside a comma list, echoed in the 101; without it the answer is 400 with
// a reason and no upgrade.
func TestSubprotocol(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, nil)
		cases := []struct {
			name       string
			protocol   string
			noProtocol bool
			want       int
		}{
			// No Sec-WebSocket-Protocol header at all.
			{name: "missing", noProtocol: true, want: http.StatusBadRequest},
			// Another subprotocol only.
			{name: "other", protocol: "chat", want: http.StatusBadRequest},
			// A prefix of the right name is not the right name.
			{name: "prefix", protocol: "mles", want: http.StatusBadRequest},
			// The exact value, as mles-rs demands.
			{name: "exact", protocol: "mles-websocket", want: http.StatusSwitchingProtocols},
			// Inside a comma list [beyond].
			{name: "list", protocol: "chat, mles-websocket", want: http.StatusSwitchingProtocols},
			// Inside a list without spaces, first position.
			{name: "list-first", protocol: "mles-websocket,chat", want: http.StatusSwitchingProtocols},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c, err := ts.dialUpgrade(dialConfig{protocol: tc.protocol, noProtocol: tc.noProtocol})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				if c.resp.StatusCode != tc.want {
					t.Fatalf("status %d, want %d", c.resp.StatusCode, tc.want)
				}
				if tc.want == http.StatusSwitchingProtocols {
					if got := c.resp.Header.Get("Sec-WebSocket-Protocol"); got != subprotocol {
						t.Fatalf("101 echoes protocol %q, want %q", got, subprotocol)
					}
					return
				}
				if got := c.resp.Header.Get("Sec-WebSocket-Accept"); got != "" {
					t.Fatalf("400 carries Sec-WebSocket-Accept %q", got)
				}
				_ = c.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
				body, _ := io.ReadAll(io.LimitReader(c.resp.Body, 1024))
				if got, want := string(bytes.TrimSpace(body)), codec.ErrSubprotocol.Reason(); got != want {
					t.Fatalf("400 body %q, want the reason %q", got, want)
				}
			})
		}

		t.Run("gorilla-list", func(t *testing.T) {
			// gorilla sends "chat, mles-websocket".
			c, _, err := ts.dialGorilla(t, []string{"chat", subprotocol}, nil)
			if err != nil {
				t.Fatalf("gorilla dial: %v", err)
			}
			defer c.Close()
			if c.Subprotocol() != subprotocol {
				t.Fatalf("negotiated %q", c.Subprotocol())
			}
		})
		t.Run("gorilla-none", func(t *testing.T) {
			c, resp, err := ts.dialGorilla(t, []string{}, nil)
			if err == nil {
				c.Close()
				t.Fatal("upgrade without subprotocol succeeded")
			}
			if resp == nil || resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("err %v, resp %v; want 400", err, resp)
			}
		})
		t.Run("coder-none", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), shortWait)
			defer cancel()
			o := ts.coderOptions(t)
			o.Subprotocols = nil
			c, resp, err := coderws.Dial(ctx, ts.url(), o)
			if err == nil {
				c.CloseNow()
				t.Fatal("upgrade without subprotocol succeeded")
			}
			if resp == nil || resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("err %v, resp %v; want 400", err, resp)
			}
		})
	})
}

// TestUpgradeRequest checks SPEC 1.1 request handling: the request may
// arrive one byte at a time; a header block over 8 KiB gets 431; requests
// that are not a valid WebSocket upgrade get no 101.
func TestUpgradeRequest(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, nil)
		// send writes req (one byte per Write when perByte) and reads the
		// response.
		send := func(t *testing.T, req []byte, perByte bool) (*rawClient, *http.Response) {
			t.Helper()
			conn, tcp, err := ts.dialTransport(dialConfig{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			c := &rawClient{conn: conn, tcp: tcp, br: bufio.NewReaderSize(conn, 64<<10)}
			if perByte {
				for i := range req {
					if err := c.write(req[i : i+1]); err != nil {
						t.Fatalf("byte %d: %v", i, err)
					}
				}
			} else if err := c.write(req); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(shortWait))
			resp, err := http.ReadResponse(c.br, &http.Request{Method: http.MethodGet})
			if err != nil {
				t.Fatalf("reading the response: %v", err)
			}
			c.resp = resp
			return c, resp
		}
		key := newWSKey()
		valid := mlestest.UpgradeRequest(ts.addr, key, nil)

		t.Run("byte-at-a-time", func(t *testing.T) {
			w := ts.joinSeq(t, "w", "bytewise")
			req := append([]byte(valid), maskedFrame(ws.OpText, true, 0, headerJSON("b", "bytewise"))...)
			req = append(req, maskedFrame(ws.OpText, true, 0, []byte("one byte at a time"))...)
			c, resp := send(t, req, true)
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status %d, want 101", resp.StatusCode)
			}
			if got := resp.Header.Get("Sec-WebSocket-Accept"); got != acceptKey(key) {
				t.Fatalf("accept %q, want %q", got, acceptKey(key))
			}
			w.expectMsg(t, ws.OpText, "one byte at a time")
			w.mustSend(t, ws.OpText, []byte("ack"))
			c.expectData(t, ws.OpText, "ack")
		})
		t.Run("header-over-8KiB", func(t *testing.T) {
			req := strings.Replace(valid, "\r\n\r\n", "\r\nX-Pad: "+strings.Repeat("p", 9000)+"\r\n\r\n", 1)
			_, resp := send(t, []byte(req), false)
			if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Fatalf("status %d, want 431", resp.StatusCode)
			}
		})
		bad := []struct {
			name, from, to string
			status         int    // the status to expect
			body           string // and the body
		}{
			// No Sec-WebSocket-Key.
			{"no-key", "Sec-WebSocket-Key: " + key + "\r\n", "", 400, codec.ErrWebSocketKey.Reason()},
			// A key that is not 16 bytes of base64.
			{"bad-key", "Sec-WebSocket-Key: " + key, "Sec-WebSocket-Key: c2hvcnQ=", 400, codec.ErrWebSocketKey.Reason()},
			// Another protocol version: 426 (RFC 6455 4.2.2).
			{"version-8", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8", 426, codec.ErrWebSocketVersion.Reason()},
			// Not GET.
			{"post", "GET ", "POST ", 400, codec.ErrUpgradeMethod.Reason()},
			// No "upgrade" in Connection.
			{"no-connection", "Connection: Upgrade\r\n", "", 400, codec.ErrUpgradeConnection.Reason()},
			// No Upgrade header: a plain HTTP request, and no page here.
			{"no-upgrade", "Upgrade: websocket\r\n", "", 404, "not found"},
		}
		for _, tc := range bad {
			t.Run(tc.name, func(t *testing.T) {
				req := strings.Replace(valid, tc.from, tc.to, 1)
				if req == valid {
					t.Fatalf("case does not change the request")
				}
				_, resp := send(t, []byte(req), false)
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
				if resp.StatusCode != tc.status || string(bytes.TrimSpace(body)) != tc.body {
					t.Fatalf("%d %q, want %d %q", resp.StatusCode, bytes.TrimSpace(body), tc.status, tc.body)
				}
				if tc.status == http.StatusUpgradeRequired && resp.Header.Get("Sec-WebSocket-Version") != "13" {
					t.Fatalf("426 without Sec-WebSocket-Version: 13 (%v)", resp.Header)
				}
			})
		}
	})
}
