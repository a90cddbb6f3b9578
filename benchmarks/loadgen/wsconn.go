package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"sync"
	"time"
)

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	opCont   = 0x0
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xA
)

// target is the parsed -url: where to dial and what to ask for.
type target struct {
	addr    string // host:port
	host    string // Host header
	path    string // request target
	tls     bool
	tlsConf *tls.Config
}

func parseTarget(raw string, insecure bool, curves string) (*target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	t := &target{host: u.Host, path: u.RequestURI()}
	port := u.Port()
	switch u.Scheme {
	case "ws", "http":
	case "wss", "https":
		t.tls = true
	default:
		return nil, fmt.Errorf("url scheme %q: want ws or wss", u.Scheme)
	}
	if port == "" {
		port = "80"
		if t.tls {
			port = "443"
		}
	}
	t.addr = net.JoinHostPort(u.Hostname(), port)
	if t.path == "" {
		t.path = "/"
	}
	if t.tls {
		// No ClientSessionCache: every connection does a full handshake, which
		// is what the connect scenario measures.
		t.tlsConf = &tls.Config{ServerName: u.Hostname(), InsecureSkipVerify: insecure}
		switch curves {
		case "x25519":
			// The classic handshake: keeps the generator's side cheap so the
			// server's handshake cost is what limits the rate.
			t.tlsConf.CurvePreferences = []tls.CurveID{tls.X25519}
		case "default", "":
		default:
			return nil, fmt.Errorf("-tls-curves %q: want x25519 or default", curves)
		}
	}
	return t, nil
}

// wsConn is one client WebSocket. Writes are serialized by wmu because a
// publisher goroutine and the reader (answering pings) both write; the read
// side (fr) belongs to the one goroutine that reads the connection.
type wsConn struct {
	nc net.Conn
	fr frameReader

	wmu  sync.Mutex
	wbuf []byte // masked outgoing frame, reused; guarded by wmu
	rng  uint64 // mask key generator; guarded by wmu
}

var errUpgrade = errors.New("loadgen: upgrade refused")

// dialWS connects, does the TLS handshake (wss), and upgrades by hand.
// subprotocol may be empty. readBuf is the size of the frame reader's buffer.
// early, when not nil, appends frames to the upgrade request so they go in the
// same write (RFC 6455 lets a client send frames right after its request; the
// server must keep them).
func dialWS(ctx context.Context, t *target, subprotocol string, readBuf int, linger0 bool, early func(c *wsConn, dst []byte) []byte) (*wsConn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, err
	}
	if linger0 {
		// Reset on close: the connect scenario would otherwise leave tens of
		// thousands of TIME_WAIT sockets and run out of ephemeral ports.
		nc.(*net.TCPConn).SetLinger(0)
	}
	if t.tls {
		tc := tls.Client(nc, t.tlsConf)
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			return nil, err
		}
		nc = tc
	}
	c := &wsConn{nc: nc, rng: rand.Uint64() | 1}
	c.fr.buf = make([]byte, readBuf)
	if err := c.upgrade(t, subprotocol, early); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func (c *wsConn) upgrade(t *target, subprotocol string, early func(c *wsConn, dst []byte) []byte) error {
	var req bytes.Buffer
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n", t.path, t.host)
	if subprotocol != "" {
		fmt.Fprintf(&req, "Sec-WebSocket-Protocol: %s\r\n", subprotocol)
	}
	req.WriteString("\r\n")
	if early != nil {
		c.wbuf = early(c, append(c.wbuf[:0], req.Bytes()...))
		req.Reset()
		req.Write(c.wbuf)
	}
	c.nc.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.nc.SetDeadline(time.Time{})
	if _, err := c.nc.Write(req.Bytes()); err != nil {
		return err
	}
	// Read until the end of the response head; bytes after it are frames and
	// stay in the frame reader's buffer.
	fr := &c.fr
	for {
		if i := bytes.Index(fr.buf[:fr.w], []byte("\r\n\r\n")); i >= 0 {
			head := fr.buf[:i]
			if !bytes.HasPrefix(head, []byte("HTTP/1.1 101")) {
				line, _, _ := bytes.Cut(head, []byte("\r\n"))
				return fmt.Errorf("%w: %s", errUpgrade, line)
			}
			fr.r = i + 4
			fr.compact()
			return nil
		}
		if fr.w == len(fr.buf) {
			return fmt.Errorf("%w: response head too large", errUpgrade)
		}
		n, err := c.nc.Read(fr.buf[fr.w:])
		fr.w += n
		if err != nil {
			return err
		}
	}
}

// appendFrame appends one masked client frame (RFC 6455 section 5.2: client
// frames are always masked) with a fresh mask key.
func (c *wsConn) appendFrame(dst []byte, op byte, payload []byte) []byte {
	dst = append(dst, 0x80|op)
	n := len(payload)
	switch {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n < 1<<16:
		dst = append(dst, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	// xorshift64: an unpredictable enough key for a benchmark, without a lock
	// beyond the write lock the caller holds.
	c.rng ^= c.rng << 13
	c.rng ^= c.rng >> 7
	c.rng ^= c.rng << 17
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], uint32(c.rng))
	dst = append(dst, key[:]...)
	off := len(dst)
	dst = append(dst, payload...)
	for i := range payload {
		dst[off+i] ^= key[i&3]
	}
	return dst
}

// writeFrame masks payload into the reused write buffer and writes it.
func (c *wsConn) writeFrame(op byte, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = c.appendFrame(c.wbuf[:0], op, payload)
	_, err := c.nc.Write(c.wbuf)
	return err
}

// writeFrames writes several frames of the same opcode in one write.
func (c *wsConn) writeFrames(op byte, payloads ...[]byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = c.wbuf[:0]
	for _, p := range payloads {
		c.wbuf = c.appendFrame(c.wbuf, op, p)
	}
	_, err := c.nc.Write(c.wbuf)
	return err
}

// closePayload is a close frame body with status 1000 (RFC 6455 section 7.4.1).
var closePayload = []byte{0x03, 0xE8}

func (c *wsConn) Close() error { return c.nc.Close() }

// frameReader parses unmasked server frames out of buf[r:w] in place. A frame
// split across reads stays in the buffer (compacted to the front) until the
// rest arrives; a frame larger than the buffer grows it (rare: big history or
// Centrifugo batches). The payload slices it returns alias buf and are valid
// until the next fill.
type frameReader struct {
	buf  []byte
	r, w int
	need int // bytes the incomplete frame at r needs in total, 0 if unknown
}

// next returns the next complete frame, or ok=false when more bytes are needed.
func (f *frameReader) next() (op byte, fin bool, payload []byte, ok bool) {
	b := f.buf[f.r:f.w]
	if len(b) < 2 {
		return 0, false, nil, false
	}
	hdr := 2
	n := uint64(b[1] & 0x7f)
	switch n {
	case 126:
		hdr = 4
		if len(b) < hdr {
			return 0, false, nil, false
		}
		n = uint64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		hdr = 10
		if len(b) < hdr {
			return 0, false, nil, false
		}
		n = binary.BigEndian.Uint64(b[2:10])
	}
	masked := b[1]&0x80 != 0
	if masked {
		hdr += 4 // servers must not mask; tolerate it anyway
	}
	total := uint64(hdr) + n
	if uint64(len(b)) < total {
		f.need = int(total)
		return 0, false, nil, false
	}
	f.need = 0
	payload = b[hdr:total]
	if masked {
		key := b[hdr-4 : hdr]
		for i := range payload {
			payload[i] ^= key[i&3]
		}
	}
	f.r += int(total)
	return b[0] & 0x0f, b[0]&0x80 != 0, payload, true
}

// compact moves the unparsed tail to the front of buf and grows buf when the
// pending frame cannot fit.
func (f *frameReader) compact() {
	if f.r > 0 {
		n := copy(f.buf, f.buf[f.r:f.w])
		f.r, f.w = 0, n
	}
	if f.need > len(f.buf) {
		nb := make([]byte, f.need+f.need/4)
		copy(nb, f.buf[:f.w])
		f.buf = nb
	}
}

// fill reads once into the free part of the buffer.
func (f *frameReader) fill(nc net.Conn) error {
	f.compact()
	n, err := nc.Read(f.buf[f.w:])
	f.w += n
	return err
}
