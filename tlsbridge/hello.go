package tlsbridge

import "errors"

// Record and handshake framing of RFC 8446 section 5.1 and 4, as far as a
// server needs it to tell whether a whole ClientHello has arrived.
const (
	recordHeaderLen    = 5
	recordHandshake    = 0x16 // ContentType handshake
	handshakeHeaderLen = 4
	typeClientHello    = 1
	maxPlaintext       = 1 << 14 // TLSPlaintext.length limit
	// MaxClientHello bounds the ClientHello message HelloComplete accepts;
	// crypto/tls refuses handshake messages over 64 KiB too (maxHandshake).
	MaxClientHello = 1 << 16
)

var (
	// ErrNotHandshake: the first bytes are not a TLS handshake record (see
	// LooksLikeHTTP for the common case of plain HTTP on the TLS port).
	ErrNotHandshake = errors.New("tlsbridge: not a TLS handshake")
	// ErrBadClientHello: the handshake records do not frame a ClientHello of
	// at most MaxClientHello bytes.
	ErrBadClientHello = errors.New("tlsbridge: malformed ClientHello")
)

// HelloComplete reports whether p, the first bytes a client sent, holds a
// whole ClientHello: the handshake records that carry it, however it is
// split across records. It returns false and nil while more bytes are
// needed, and an error as soon as p cannot start a TLS handshake. It reads p
// only, so a server can keep the bytes where they arrived (gnet's inbound
// buffer) and start the handshake, and hold a handshake slot, only once the
// client has said everything its first flight says. It never allocates.
func HelloComplete(p []byte) (bool, error) {
	if len(p) > 0 && p[0] != recordHandshake {
		return false, ErrNotHandshake
	}
	var (
		got  int // handshake bytes seen, over all records
		need = -1
		hdr  [handshakeHeaderLen]byte
	)
	for off := 0; ; {
		if len(p)-off < recordHeaderLen {
			return false, nil
		}
		r := p[off : off+recordHeaderLen]
		if r[0] != recordHandshake || r[1] != 3 {
			// A ClientHello's records carry nothing else, and every TLS
			// version on the wire is 3.x.
			if off == 0 {
				return false, ErrNotHandshake
			}
			return false, ErrBadClientHello
		}
		n := int(r[3])<<8 | int(r[4])
		if n == 0 || n > maxPlaintext {
			return false, ErrBadClientHello
		}
		off += recordHeaderLen
		body := p[off:min(off+n, len(p))]
		i := 0
		for ; got < handshakeHeaderLen && i < len(body); i++ {
			hdr[got] = body[i]
			got++
		}
		if need < 0 && got == handshakeHeaderLen {
			if hdr[0] != typeClientHello {
				return false, ErrBadClientHello
			}
			need = handshakeHeaderLen + (int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3]))
			if need > MaxClientHello {
				return false, ErrBadClientHello
			}
		}
		got += len(body) - i
		if need >= 0 && got >= need {
			return true, nil
		}
		if len(body) < n {
			return false, nil
		}
		off += n
	}
}

// LooksLikeHTTP reports whether the first five bytes a client sent to the
// TLS port look like a plain HTTP request: the prefixes of net/http's
// tlsRecordHeaderLooksLikeHTTP. Fewer than five bytes never match.
func LooksLikeHTTP(p []byte) bool {
	if len(p) < recordHeaderLen {
		return false
	}
	switch string(p[:recordHeaderLen]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}
