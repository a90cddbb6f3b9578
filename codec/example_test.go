package codec_test

import (
	"errors"
	"fmt"

	"github.com/gobwas/ws"
	"github.com/mles/mles/codec"
)

// The server's side of a session in miniature: upgrade, header frame, one
// message taken for fan-out, a ping answered. Bytes arrive in two reads; the
// second holds the end of the request and the first frames.
func Example() {
	request := "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n" +
		"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mles-websocket\r\n\r\n"
	frames := append(maskedText(`{"uid":"alice","channel":"example"}`), maskedText("hello")...)
	in := []byte(request[:40])

	var up codec.UpgradeParser
	n, err := up.Parse(in)
	fmt.Println("first read:", n, err)
	in = append(in, request[40:]...)
	in = append(in, frames...)
	n, err = up.Parse(in)
	var he codec.HandshakeError
	if errors.As(err, &he) {
		fmt.Printf("%s", codec.AppendHTTPError(nil, he.Status(), he.Reason()))
		return
	}
	fmt.Println("upgrade:", up.Request.Upgrade, "first frame bytes:", len(in)-n)
	_ = codec.AppendUpgradeResponse(nil, &up.Request.Key) // written to the socket

	fr := codec.FrameReader{MaxMessage: 16 << 20}
	p := in[n:]
	joined := false
	for len(p) > 0 {
		ev, used, err := fr.Next(p)
		p = p[used:]
		if err != nil {
			code, reason := codec.CloseCodeOf(err)
			fmt.Println("close", code, reason)
			return
		}
		if ev != codec.EventMessage {
			continue
		}
		op, payload := fr.Message()
		if !joined {
			if op != ws.OpText {
				fmt.Println(codec.ErrHeaderBinary)
				return
			}
			h, err := codec.DecodeHeader(payload, codec.HeaderLimits{})
			if err == nil {
				err = codec.CheckAuth(h, "", false)
			}
			if err != nil {
				fmt.Println(err)
				return
			}
			fmt.Printf("join: %s\n", codec.AppendJoinJSON(nil, h.UID, h.Channel))
			fr.ReleaseMessage() // the reader reuses its buffer
			joined = true
			continue
		}
		frame := fr.TakeFrame() // ours now: share it with every subscriber
		fmt.Printf("fan out %d bytes: % x\n", len(frame), frame[:2])
	}
	// Output:
	// first read: 0 <nil>
	// upgrade: true first frame bytes: 52
	// join: {"uid":"alice","channel":"example"}
	// fan out 7 bytes: 81 05
}

// maskedText builds a masked client text frame of a short payload.
func maskedText(s string) []byte {
	mask := [4]byte{1, 2, 3, 4}
	f := append([]byte{0x81, 0x80 | byte(len(s))}, mask[:]...)
	p := []byte(s)
	ws.Cipher(p, mask, 0)
	return append(f, p...)
}
