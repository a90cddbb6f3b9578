package codec

import (
	"encoding/binary"

	"github.com/gobwas/ws"
)

// MaxServerHeader is the longest header of a server frame: 2 bytes plus an
// 8-byte extended length, and no masking key, since a server never masks
// (RFC 6455 section 5.1). FrameReader keeps this much headroom in front of
// every message so that TakeFrame can build the outbound frame in place.
const MaxServerHeader = 2 + 8

// bit masks of the first two header bytes (RFC 6455 section 5.2).
const (
	bitFin  = 0x80
	bitsRsv = 0x70
	bitMask = 0x80
	bitsOp  = 0x0F
	bitsLen = 0x7F
)

// FrameHeaderLen returns the length of the unmasked frame header that
// AppendFrameHeader writes for a payload of length bytes: 2, 4 or 10 (RFC
// 6455 section 5.2, "the minimal number of bytes MUST be used to encode the
// length").
func FrameHeaderLen(length int) int {
	switch {
	case length <= 125:
		return 2
	case length <= 0xFFFF:
		return 4
	}
	return 10
}

// AppendFrameHeader appends the header of a final, unmasked server frame
// with opcode op and a payload of length bytes. The caller appends the
// payload itself; this is the zero-copy path for payloads that live
// elsewhere.
func AppendFrameHeader(dst []byte, op ws.OpCode, length int) []byte {
	var h [MaxServerHeader]byte
	n := putFrameHeader(h[:], op, length)
	return append(dst, h[:n]...)
}

// putFrameHeader writes the header for AppendFrameHeader into h, which must
// hold FrameHeaderLen(length) bytes, and returns the number of bytes written.
func putFrameHeader(h []byte, op ws.OpCode, length int) int {
	h[0] = bitFin | byte(op)&bitsOp
	switch {
	case length <= 125:
		h[1] = byte(length)
		return 2
	case length <= 0xFFFF:
		h[1] = 126
		binary.BigEndian.PutUint16(h[2:4], uint16(length))
		return 4
	}
	h[1] = 127
	binary.BigEndian.PutUint64(h[2:10], uint64(length))
	return 10
}

// AppendFrame appends a final, unmasked server frame with opcode op that
// carries payload.
func AppendFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	dst = AppendFrameHeader(dst, op, len(payload))
	return append(dst, payload...)
}

// AppendClose appends a close frame with code and reason. The reason is cut
// to MaxCloseReason bytes at a rune boundary, because a control frame holds at
// most 125 bytes (RFC 6455 section 5.5). A code that must not go on the
// wire (see ValidCloseCode; for example 0, 1005 or 1006) yields a close frame
// with an empty payload, which the peer reads as 1005 "no status" (section
// 7.1.5); the reason is dropped then, since it cannot travel without a code.
func AppendClose(dst []byte, code ws.StatusCode, reason string) []byte {
	if !ValidCloseCode(code) {
		return append(dst, bitFin|byte(ws.OpClose), 0)
	}
	reason = truncateReason(reason)
	dst = append(dst, bitFin|byte(ws.OpClose), byte(2+len(reason)), byte(code>>8), byte(code))
	return append(dst, reason...)
}

// AppendMaskedFrame appends a final frame as a client sends it (the
// dialing side of a peer session): opcode op, masking key key, and payload
// masked with it (RFC 6455 section 5.3).
func AppendMaskedFrame(dst []byte, op ws.OpCode, payload []byte, key [4]byte) []byte {
	var h [MaxServerHeader]byte
	n := putFrameHeader(h[:], op, len(payload))
	h[1] |= bitMask
	dst = append(dst, h[:n]...)
	dst = append(dst, key[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	ws.Cipher(dst[start:], key, 0)
	return dst
}
