package codec

import (
	"encoding/binary"
	"strconv"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Errors that FrameReader.Next returns. Each is a ProtocolError whose Code
// is the close code RFC 6455 section 7.4.1 assigns to the violation.
const (
	// ErrUnmasked: a client frame without a masking key (section 5.1,
	// "a server MUST close the connection upon receiving a frame that is not
	// masked").
	ErrUnmasked ProtocolError = "unmasked client frame"
	// ErrMasked: a server frame with a masking key (section 5.1, "A
	// server MUST NOT mask any frames"), read with Unmasked.
	ErrMasked ProtocolError = "masked server frame"
	// ErrRSV: a frame with RSV1-3 set; no extension is negotiated
	// (section 5.2).
	ErrRSV ProtocolError = "reserved bits set"
	// ErrReservedOpcode: opcodes 0x3-0x7 and 0xB-0xF (section 5.2).
	ErrReservedOpcode ProtocolError = "reserved opcode"
	// ErrBadControl: a control frame with more than 125 bytes of payload
	// (section 5.5).
	ErrBadControl ProtocolError = "control frame too long"
	// ErrFragmentedControl: a control frame without FIN (section 5.5,
	// "control frames MUST NOT be fragmented").
	ErrFragmentedControl ProtocolError = "fragmented control frame"
	// ErrBadContinuation: a continuation frame with no message to continue
	// (section 5.4).
	ErrBadContinuation ProtocolError = "continuation frame without a message"
	// ErrNestedMessage: a text or binary frame while a fragmented message is
	// still open; only control frames may interleave (section 5.4).
	ErrNestedMessage ProtocolError = "new message inside a fragmented message"
	// ErrBadClosePayload: a close frame with a 1-byte payload, which cannot
	// hold the 2-byte code (section 5.5.1).
	ErrBadClosePayload ProtocolError = "close payload of 1 byte"
	// ErrBadCloseCode: a close code that must not be sent (section 7.4,
	// see ValidCloseCode).
	ErrBadCloseCode ProtocolError = "invalid close code"
	// ErrInvalidUTF8: a text message or close reason that is not UTF-8
	// (section 8.1); closes with 1007.
	ErrInvalidUTF8 ProtocolError = "invalid UTF-8"
	// ErrBadLength: a 64-bit payload length with its most significant bit
	// set, which section 5.2 forbids.
	ErrBadLength ProtocolError = "64-bit length with the most significant bit set"
	// ErrFrameTooLarge: a message longer than FrameReader.MaxMessage, found
	// from the declared frame lengths before any of it is buffered; closes
	// with 1009 (section 7.4.1).
	ErrFrameTooLarge ProtocolError = "message too big"
)

// Event is what FrameReader.Next found.
type Event uint8

// Events reported by FrameReader.Next.
const (
	// EventNone: all input was consumed and the current frame or message
	// needs more bytes.
	EventNone Event = iota
	// EventMessage: a complete text or binary message; see Message and
	// TakeFrame.
	EventMessage
	// EventPing: a ping; Control holds its payload, which the pong echoes
	// (section 5.5.3).
	EventPing
	// EventPong: a pong; Control holds its payload.
	EventPong
	// EventClose: a valid close frame; CloseCode gives its code and Control
	// its raw payload (code and reason).
	EventClose
)

// String returns the event's name, for logs and test failures.
func (e Event) String() string {
	switch e {
	case EventNone:
		return "none"
	case EventMessage:
		return "message"
	case EventPing:
		return "ping"
	case EventPong:
		return "pong"
	case EventClose:
		return "close"
	}
	return "event(" + strconv.Itoa(int(e)) + ")"
}

// maxClientHeader is the longest client frame header: 2 bytes, an 8-byte
// extended length and the 4-byte masking key (RFC 6455 section 5.2).
const maxClientHeader = 2 + 8 + 4

// maxControl is the largest control frame payload (RFC 6455 section 5.5).
const maxControl = 125

// firstAlloc bounds the buffer allocated when a message starts before its
// bytes arrive: a peer-declared length is never trusted for an allocation,
// the buffer grows as payload actually arrives.
const firstAlloc = 512

// retainMax is the largest message buffer ReleaseMessage keeps for the next
// message. A larger one was grown for a rare big message; keeping it would
// pin that memory to an idle connection.
const retainMax = 64 << 10

// FrameReader is a resumable parser and validator of client frames
// (RFC 6455 sections 5.2-5.6 and 8.1). It is fed bytes as they arrive, in
// any chunking, one byte at a time included, and never needs the caller to
// keep bytes it has consumed: a frame header split across calls waits in a
// 14-byte array inside the reader, and payload is unmasked (ws.Cipher with
// the running offset) and appended to the message buffer as it arrives.
// Fragmented messages are reassembled; control frames may come between
// fragments and are reported on their own.
//
// The message buffer keeps MaxServerHeader bytes of headroom in front of the
// payload, so TakeFrame turns a received message into the unmasked server
// frame that is fanned out to other clients without copying the payload.
//
// The zero value is ready to use, without a size limit. A FrameReader
// belongs to one connection and is not safe for concurrent use.
type FrameReader struct {
	// MaxMessage is the largest data message accepted, in bytes, counting
	// all fragments; 0 means no limit. It is checked against each frame's
	// declared length before the payload is buffered (ErrFrameTooLarge,
	// close code 1009). Change it only between messages.
	MaxMessage int
	// Unmasked reads frames from a server (the client side of a peer
	// session): frames must come without a masking key (ErrMasked).
	// Change it only before the first byte.
	Unmasked bool

	// Every connection carries one, so the small fields are packed
	// together (104 bytes on amd64).

	// Header of the frame being read: hdrN bytes of hdrNeed so far.
	// hdrNeed is 2 until the second byte tells the full length.
	hdr     [maxClientHeader]byte
	hdrN    uint8
	hdrNeed uint8

	// The frame whose payload is being read.
	inPayload bool
	fin       bool
	op        ws.OpCode
	mask      [4]byte
	remain    int // payload bytes not yet read
	off       int // payload bytes read, the masking key offset

	// buf is MaxServerHeader bytes of headroom followed by the message
	// payload read so far. msgOp is the opcode of the open message, 0 if
	// none. ready is set while buf holds the message last reported by
	// EventMessage, with readyOp its opcode.
	buf     []byte
	msgOp   ws.OpCode
	ready   bool
	readyOp ws.OpCode

	// The payload of the last control frame (ctrlN bytes; at most 125),
	// and its close code. The array is allocated by the first control
	// frame with a payload: most connections only ever see empty pongs,
	// and an idle connection should not carry 125 bytes it never uses.
	ctrlN     uint8
	closeCode ws.StatusCode
	ctrl      *[maxControl]byte

	// err is sticky: after an error the stream cannot be resynchronized.
	err error
}

// Next consumes bytes from p until it completes one event or p is used up,
// and returns the event and the number of bytes consumed. After an event the
// caller calls Next again with p[n:], which may hold further frames; with
// EventNone, n == len(p) and the reader waits for more bytes.
//
// Calling Next ends the validity of what Message and Control returned for
// the previous event, and drops a message that was neither taken nor
// released (as ReleaseMessage does).
//
// A violation returns a ProtocolError (one of the Err constants) with the
// close code to send; the error is sticky until Reset, as the stream cannot
// be trusted past it. After EventClose no further frame is expected
// (section 5.5.1) and the caller stops reading.
func (r *FrameReader) Next(p []byte) (ev Event, n int, err error) {
	if r.err != nil {
		return EventNone, 0, r.err
	}
	if r.ready {
		r.ReleaseMessage()
	}
	for {
		if !r.inPayload {
			if r.hdrNeed == 0 {
				r.hdrNeed = 2
			}
			for r.hdrN < r.hdrNeed {
				if n == len(p) {
					return EventNone, n, nil
				}
				c := copy(r.hdr[r.hdrN:r.hdrNeed], p[n:])
				r.hdrN += uint8(c) // c <= maxClientHeader
				n += c
				if r.hdrNeed == 2 && r.hdrN == 2 {
					err = r.checkFirstBytes()
					if err != nil {
						return r.fail(err, n)
					}
				}
			}
			err = r.startPayload()
			if err != nil {
				return r.fail(err, n)
			}
		}

		k := min(r.remain, len(p)-n)
		if r.op.IsControl() {
			if k > 0 && r.ctrl == nil {
				r.ctrl = new([maxControl]byte)
			}
			dst := r.Control()[r.ctrlN : int(r.ctrlN)+k]
			copy(dst, p[n:n+k])
			ws.Cipher(dst, r.mask, r.off)
			r.ctrlN += uint8(k) // k <= maxControl
		} else if k > 0 {
			r.growFor(k)
			start := len(r.buf)
			r.buf = append(r.buf, p[n:n+k]...)
			ws.Cipher(r.buf[start:], r.mask, r.off)
		}
		n += k
		r.remain -= k
		r.off += k
		if r.remain > 0 {
			return EventNone, n, nil
		}

		r.inPayload = false
		r.hdrN = 0
		r.hdrNeed = 2
		ev, err = r.endFrame()
		if err != nil {
			return r.fail(err, n)
		}
		if ev != EventNone {
			return ev, n, nil
		}
	}
}

// fail makes err sticky and returns it.
func (r *FrameReader) fail(err error, n int) (Event, int, error) {
	r.err = err
	return EventNone, n, err
}

// checkFirstBytes validates the first two header bytes, which carry all the
// per-frame rules, and sets hdrNeed to the full header length.
func (r *FrameReader) checkFirstBytes() error {
	b0, b1 := r.hdr[0], r.hdr[1]
	op := ws.OpCode(b0 & bitsOp)
	fin := b0&bitFin != 0
	length := b1 & bitsLen
	switch {
	case b0&bitsRsv != 0:
		return ErrRSV
	case op.IsReserved():
		return ErrReservedOpcode
	case b1&bitMask == 0 && !r.Unmasked:
		return ErrUnmasked
	case b1&bitMask != 0 && r.Unmasked:
		return ErrMasked
	}
	if op.IsControl() {
		// Section 5.5: all control frames MUST have a payload length of
		// 125 bytes or less and MUST NOT be fragmented.
		if !fin {
			return ErrFragmentedControl
		}
		if length > maxControl {
			return ErrBadControl
		}
	} else {
		// Section 5.4: a fragmented message is a start frame, then
		// continuation frames; data frames of different messages do not
		// interleave.
		if op == ws.OpContinuation && r.msgOp == 0 {
			return ErrBadContinuation
		}
		if op != ws.OpContinuation && r.msgOp != 0 {
			return ErrNestedMessage
		}
	}
	r.op = op
	r.fin = fin
	switch length {
	case 126:
		r.hdrNeed = 2 + 2
	case 127:
		r.hdrNeed = 2 + 8
	default:
		r.hdrNeed = 2
	}
	if !r.Unmasked {
		r.hdrNeed += 4
	}
	return nil
}

// startPayload reads the length and masking key from the complete header and
// checks the length against MaxMessage before a byte of payload is kept.
func (r *FrameReader) startPayload() error {
	var length uint64
	switch r.hdr[1] & bitsLen {
	case 126:
		length = uint64(binary.BigEndian.Uint16(r.hdr[2:4]))
	case 127:
		length = binary.BigEndian.Uint64(r.hdr[2:10])
		if length>>63 != 0 {
			return ErrBadLength
		}
	default:
		length = uint64(r.hdr[1] & bitsLen)
	}
	if r.Unmasked {
		r.mask = [4]byte{} // ws.Cipher with a zero key leaves the payload as it is
	} else {
		copy(r.mask[:], r.hdr[r.hdrNeed-4:r.hdrNeed])
	}

	if r.op.IsControl() {
		r.ctrlN = 0
	} else {
		if r.op != ws.OpContinuation {
			r.msgOp = r.op
			if cap(r.buf) >= MaxServerHeader {
				r.buf = r.buf[:MaxServerHeader]
			} else {
				r.buf = nil // allocated by growFor, sized by what arrives
			}
		}
		// What this message may still take; comparisons stay in uint64 so
		// a hostile 64-bit length cannot overflow an int.
		room := uint64(maxInt - MaxServerHeader)
		if r.MaxMessage > 0 {
			room = uint64(r.MaxMessage)
		}
		if have := uint64(r.msgLen()); have <= room {
			room -= have
		} else {
			room = 0
		}
		if length > room {
			return ErrFrameTooLarge
		}
	}
	r.remain = int(length)
	r.off = 0
	r.inPayload = true
	return nil
}

// maxInt is the largest int, the bound of a buffer length.
const maxInt = int(^uint(0) >> 1)

// msgLen returns the payload bytes of the open message buffered so far.
func (r *FrameReader) msgLen() int {
	if len(r.buf) < MaxServerHeader {
		return 0
	}
	return len(r.buf) - MaxServerHeader
}

// growFor makes sure the message buffer exists, with its headroom, before k
// payload bytes that have arrived are appended. A fresh buffer is sized by
// the bytes present plus at most firstAlloc, never by the declared length
// alone: a peer could declare megabytes and send nothing.
func (r *FrameReader) growFor(k int) {
	if r.buf != nil {
		return
	}
	extra := max(k, min(r.remain, firstAlloc))
	r.buf = make([]byte, MaxServerHeader, MaxServerHeader+extra)
}

// endFrame acts on a frame whose payload is complete and returns the event
// it completes, if any.
func (r *FrameReader) endFrame() (Event, error) {
	switch r.op {
	case ws.OpPing:
		return EventPing, nil
	case ws.OpPong:
		return EventPong, nil
	case ws.OpClose:
		code, _, err := ParseClose(r.Control())
		if err != nil {
			return EventNone, err
		}
		r.closeCode = code
		return EventClose, nil
	}
	if !r.fin {
		return EventNone, nil
	}
	r.growFor(0) // an empty message still needs its headroom
	// Section 8.1: text must be valid UTF-8 as a whole; a code point may
	// be split across fragments, so the check waits for the last one.
	if r.msgOp == ws.OpText && !utf8.Valid(r.buf[MaxServerHeader:]) {
		return EventNone, ErrInvalidUTF8
	}
	r.readyOp = r.msgOp
	r.msgOp = 0
	r.ready = true
	return EventMessage, nil
}
