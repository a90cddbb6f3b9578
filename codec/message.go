package codec

// What the FrameReader hands out after an event (the message, its server
// frame, a control payload) and how its message buffer is kept between
// messages.

import "github.com/gobwas/ws"

// Message returns the message reported by the last EventMessage: its opcode
// (ws.OpText or ws.OpBinary) and its unmasked payload. The payload belongs to
// the reader and is valid until the next call to Next, TakeFrame,
// ReleaseMessage, Release or Reset. Without a message it returns 0, nil.
func (r *FrameReader) Message() (op ws.OpCode, payload []byte) {
	if !r.ready {
		return 0, nil
	}
	return r.readyOp, r.buf[MaxServerHeader:]
}

// Frame turns the message reported by the last EventMessage into an
// unmasked, unfragmented server frame (FIN, same opcode, minimal length
// encoding) by writing its header into the headroom in front of the
// payload, and returns that frame. The frame still belongs to the reader:
// it is valid until the next call to Next, TakeFrame, ReleaseMessage,
// Release or Reset, so a caller that keeps it copies it first (and may then
// call ReleaseMessage, so the buffer serves the next message). Without a
// message it returns nil.
func (r *FrameReader) Frame() []byte {
	if !r.ready {
		return nil
	}
	length := len(r.buf) - MaxServerHeader
	start := MaxServerHeader - FrameHeaderLen(length)
	putFrameHeader(r.buf[start:MaxServerHeader], r.readyOp, length)
	return r.buf[start:len(r.buf):len(r.buf)]
}

// TakeFrame is Frame with the memory handed over: the frame now belongs to
// the caller, the reader never touches it again and starts a fresh buffer
// for the next message, so the frame may be shared (a channel ring) for as
// long as needed, without a copy. Without a message it returns nil.
func (r *FrameReader) TakeFrame() []byte {
	frame := r.Frame()
	if frame != nil {
		r.buf = nil
		r.ready = false
	}
	return frame
}

// ReleaseMessage drops the message reported by the last EventMessage when
// the caller does not take it (the header frame, once decoded), so its
// buffer serves the next message. A buffer that grew past 64 KiB is freed
// instead, so a rare large message does not pin memory to the connection.
// Next calls it implicitly.
func (r *FrameReader) ReleaseMessage() {
	if !r.ready {
		return
	}
	r.ready = false
	if cap(r.buf) > MaxServerHeader+retainMax {
		r.buf = nil
		return
	}
	r.buf = r.buf[:0]
}

// Shrink frees the message buffer kept for the next message, unless a
// message is being read or waits to be taken: a connection between
// messages then holds no buffer. The server calls it on quiet members.
func (r *FrameReader) Shrink() {
	if !r.ready && r.msgOp == 0 {
		r.buf = nil
	}
}

// Control returns the payload of the control frame reported by the last
// EventPing, EventPong or EventClose: the bytes to echo in a pong, or the raw
// close payload (2-byte code and reason) to echo in the closing handshake.
// It is valid until the next call to Next.
func (r *FrameReader) Control() []byte {
	if r.ctrl == nil {
		return nil
	}
	return r.ctrl[:r.ctrlN]
}

// CloseCode returns the code of the close frame reported by the last
// EventClose, or ws.StatusNoStatusRcvd (1005) when it carried no payload
// (section 7.1.5). The reason is Control()[2:].
func (r *FrameReader) CloseCode() ws.StatusCode {
	return r.closeCode
}

// Reset returns the reader to its initial state, clearing a sticky error
// and any partial frame or message, so it can read a new stream. It keeps
// MaxMessage and a message buffer it may reuse.
func (r *FrameReader) Reset() {
	buf := r.buf[:0]
	if cap(buf) > MaxServerHeader+retainMax {
		buf = nil
	}
	*r = FrameReader{MaxMessage: r.MaxMessage, buf: buf}
}

// Release resets the reader and frees its message buffer; the server calls
// it when the connection closes or idles. The reader stays usable.
func (r *FrameReader) Release() {
	*r = FrameReader{MaxMessage: r.MaxMessage}
}
