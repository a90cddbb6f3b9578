package codec

// The dialing side of the handshake, for a server that connects to its
// peer as a client (SPEC 1.5): the request, and the check of the 101.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// NewKey returns a fresh Sec-WebSocket-Key: 16 random bytes in base64.
func NewKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

// AppendDialRequest appends the upgrade request a server sends to its
// peer: GET path on host with key, offering PeerSubprotocol and then
// Subprotocol, so that any Mles server can answer.
func AppendDialRequest(dst []byte, host, path, key string) []byte {
	if path == "" {
		path = "/"
	}
	return fmt.Appendf(dst, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s, %s\r\n\r\n",
		path, host, key, PeerSubprotocol, Subprotocol)
}

// ErrDialResponse is a peer's answer to the upgrade that is not a valid
// 101 for the key sent.
var ErrDialResponse = errors.New("codec: the peer refused the upgrade")

// ParseDialResponse checks the peer's answer to AppendDialRequest in buf.
// n is 0 while the header block is incomplete; then it is the block's
// length, and the bytes after it are the first frames. subprotocol is the
// one the peer selected (PeerSubprotocol or Subprotocol).
func ParseDialResponse(buf []byte, key string) (n int, subprotocol string, err error) {
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 {
		if len(buf) > MaxHeaderBlock {
			return 0, "", fmt.Errorf("%w: %v", ErrDialResponse, ErrHeaderBlockTooLarge)
		}
		return 0, "", nil
	}
	n = end + 4
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(buf[:n])), nil)
	if err != nil {
		return 0, "", fmt.Errorf("%w: %v", ErrDialResponse, err)
	}
	_ = resp.Body.Close()
	var k [24]byte
	copy(k[:], key)
	accept := AcceptKey(&k)
	switch {
	case resp.StatusCode != http.StatusSwitchingProtocols:
		return 0, "", fmt.Errorf("%w: status %s", ErrDialResponse, resp.Status)
	case !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket"):
		return 0, "", fmt.Errorf("%w: Upgrade %q", ErrDialResponse, resp.Header.Get("Upgrade"))
	case resp.Header.Get("Sec-WebSocket-Accept") != string(accept[:]):
		return 0, "", fmt.Errorf("%w: wrong Sec-WebSocket-Accept", ErrDialResponse)
	}
	switch p := resp.Header.Get("Sec-WebSocket-Protocol"); p {
	case PeerSubprotocol, Subprotocol:
		return n, p, nil
	default:
		return 0, "", fmt.Errorf("%w: subprotocol %q", ErrDialResponse, p)
	}
}
