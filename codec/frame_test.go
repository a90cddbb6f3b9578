package codec

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

// frameEvent is one event as the tests compare it.
type frameEvent struct {
	Ev   Event
	Op   ws.OpCode     // message opcode, for EventMessage
	Data string        // message or control payload
	Code ws.StatusCode // for EventClose
}

func (e frameEvent) String() string {
	d := e.Data
	if len(d) > 20 {
		d = fmt.Sprintf("%.20q...(%d bytes)", d, len(d))
	} else {
		d = fmt.Sprintf("%q", d)
	}
	return fmt.Sprintf("%v op=%v code=%d %s", e.Ev, e.Op, e.Code, d)
}

// readAll feeds chunks to a fresh FrameReader and returns the events up to
// the first error. With take set, messages are taken with TakeFrame and
// decoded back with gobwas ws.ReadFrame only after the whole input was
// parsed, which proves that the reader never touches a taken frame.
func readAll(t *testing.T, maxMessage int, chunks [][]byte, take bool) ([]frameEvent, error) {
	t.Helper()
	r := FrameReader{MaxMessage: maxMessage}
	var evs []frameEvent
	var frames [][]byte
	var frameAt []int // index in evs of each taken frame
	var err error
feed:
	for _, chunk := range chunks {
		for {
			var ev Event
			var n int
			ev, n, err = r.Next(chunk)
			if n < 0 || n > len(chunk) {
				t.Fatalf("Next consumed %d of %d bytes", n, len(chunk))
			}
			chunk = chunk[n:]
			if err != nil {
				break feed
			}
			if ev == EventNone {
				if len(chunk) != 0 {
					t.Fatalf("EventNone with %d bytes left", len(chunk))
				}
				break
			}
			fe := frameEvent{Ev: ev}
			switch ev {
			case EventMessage:
				op, payload := r.Message()
				fe.Op = op
				if take {
					frameAt = append(frameAt, len(evs))
					frames = append(frames, r.TakeFrame())
					if _, p := r.Message(); p != nil {
						t.Fatalf("Message after TakeFrame = %d bytes, want nil", len(p))
					}
				} else {
					fe.Data = string(payload)
				}
			case EventClose:
				fe.Code = r.CloseCode()
				fe.Data = string(r.Control())
			default:
				fe.Data = string(r.Control())
			}
			evs = append(evs, fe)
		}
	}
	for i, frame := range frames {
		f, rerr := readFrame(bytes.NewReader(frame))
		if rerr != nil {
			t.Fatalf("readFrame of taken frame: %v", rerr)
		}
		if !f.Header.Fin || f.Header.Masked || f.Header.Rsv != 0 || int(f.Header.Length) != len(frame)-FrameHeaderLen(len(f.Payload)) {
			t.Fatalf("taken frame header %+v, frame length %d", f.Header, len(frame))
		}
		if f.Header.OpCode != evs[frameAt[i]].Op {
			t.Fatalf("taken frame opcode %v, want %v", f.Header.OpCode, evs[frameAt[i]].Op)
		}
		evs[frameAt[i]].Data = string(f.Payload)
	}
	return evs, err
}

// text returns n bytes of printable ASCII, valid UTF-8.
func text(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}

// closePayload builds a close payload.
func closePayload(code ws.StatusCode, reason string) []byte {
	return append([]byte{byte(code >> 8), byte(code)}, reason...)
}

func msg(op ws.OpCode, data []byte) frameEvent {
	return frameEvent{Ev: EventMessage, Op: op, Data: string(data)}
}

type frameCase struct {
	name string
	max  int // FrameReader.MaxMessage
	in   []byte
	want []frameEvent
	err  error         // sentinel expected after the events, nil for none
	code ws.StatusCode // close code the error must carry
}

func frameCases() []frameCase {
	mib := text(1 << 20)
	cases := []frameCase{
		{
			// Empty text message: 7-bit length 0, headroom still there.
			name: "text/len=0",
			in:   clientFrame(true, ws.OpText, nil),
			want: []frameEvent{msg(ws.OpText, nil)},
		},
		{
			// Longest 7-bit length.
			name: "text/len=125",
			in:   clientFrame(true, ws.OpText, text(125)),
			want: []frameEvent{msg(ws.OpText, text(125))},
		},
		{
			// Shortest 16-bit length.
			name: "binary/len=126",
			in:   clientFrame(true, ws.OpBinary, text(126)),
			want: []frameEvent{msg(ws.OpBinary, text(126))},
		},
		{
			// Longest 16-bit length.
			name: "text/len=65535",
			in:   clientFrame(true, ws.OpText, text(65535)),
			want: []frameEvent{msg(ws.OpText, text(65535))},
		},
		{
			// Shortest 64-bit length.
			name: "binary/len=65536",
			in:   clientFrame(true, ws.OpBinary, text(65536)),
			want: []frameEvent{msg(ws.OpBinary, text(65536))},
		},
		{
			// 1 MiB message exactly at the limit.
			name: "binary/len=1MiB/at-limit",
			max:  1 << 20,
			in:   clientFrame(true, ws.OpBinary, mib),
			want: []frameEvent{msg(ws.OpBinary, mib)},
		},
		{
			// 1 MiB text without a limit.
			name: "text/len=1MiB/no-limit",
			in:   clientFrame(true, ws.OpText, mib),
			want: []frameEvent{msg(ws.OpText, mib)},
		},
		{
			// A non-minimal 64-bit length for 5 bytes is accepted: the
			// minimal-encoding rule binds the sender (section 5.2).
			name: "text/non-minimal-length",
			in: func() []byte {
				f := []byte{bitFin | byte(ws.OpText), bitMask | 127, 0, 0, 0, 0, 0, 0, 0, 5}
				f = append(f, testMask[:]...)
				p := []byte("hello")
				ws.Cipher(p, testMask, 0)
				return append(f, p...)
			}(),
			want: []frameEvent{msg(ws.OpText, []byte("hello"))},
		},
		{
			// Several frames in one read come out one event per call.
			name: "three-messages",
			in: concat(clientFrame(true, ws.OpText, []byte("one")),
				clientFrame(true, ws.OpBinary, []byte{0, 1, 2}),
				clientFrame(true, ws.OpText, []byte("three"))),
			want: []frameEvent{
				msg(ws.OpText, []byte("one")),
				msg(ws.OpBinary, []byte{0, 1, 2}),
				msg(ws.OpText, []byte("three")),
			},
		},
		{
			// Fragmented text with a ping and a pong between fragments;
			// the control frames are reported at once (section 5.4).
			name: "fragmented/ping-between",
			in: concat(clientFrame(false, ws.OpText, []byte("Hel")),
				clientFrame(true, ws.OpPing, []byte("p1")),
				clientFrame(false, ws.OpContinuation, []byte("lo")),
				clientFrame(true, ws.OpPong, nil),
				clientFrame(true, ws.OpContinuation, []byte(", world"))),
			want: []frameEvent{
				{Ev: EventPing, Data: "p1"},
				{Ev: EventPong},
				msg(ws.OpText, []byte("Hello, world")),
			},
		},
		{
			// Fragmented binary with empty fragments.
			name: "fragmented/empty-fragments",
			in: concat(clientFrame(false, ws.OpBinary, nil),
				clientFrame(false, ws.OpContinuation, []byte{1}),
				clientFrame(true, ws.OpContinuation, nil)),
			want: []frameEvent{msg(ws.OpBinary, []byte{1})},
		},
		{
			// A code point split across fragments is valid UTF-8 once the
			// message is whole (section 8.1).
			name: "fragmented/utf8-split-valid",
			in: concat(clientFrame(false, ws.OpText, []byte("\xe2\x82")),
				clientFrame(true, ws.OpContinuation, []byte("\xac"))),
			want: []frameEvent{msg(ws.OpText, []byte("€"))},
		},
		{
			// Two fragments totalling exactly the limit.
			name: "fragmented/at-limit",
			max:  100,
			in: concat(clientFrame(false, ws.OpBinary, text(50)),
				clientFrame(true, ws.OpContinuation, text(50))),
			want: []frameEvent{msg(ws.OpBinary, concat(text(50), text(50)))},
		},
		{
			// Ping with the largest control payload.
			name: "ping/len=125",
			in:   clientFrame(true, ws.OpPing, text(125)),
			want: []frameEvent{{Ev: EventPing, Data: string(text(125))}},
		},
		{
			// Close with code and reason.
			name: "close/1000-reason",
			in:   clientFrame(true, ws.OpClose, closePayload(1000, "bye")),
			want: []frameEvent{{Ev: EventClose, Code: 1000, Data: string(closePayload(1000, "bye"))}},
		},
		{
			// Close without payload reports 1005 (section 7.1.5).
			name: "close/empty",
			in:   clientFrame(true, ws.OpClose, nil),
			want: []frameEvent{{Ev: EventClose, Code: ws.StatusNoStatusRcvd}},
		},
		{
			// Application and IANA-registered codes are valid.
			name: "close/valid-codes",
			in: concat(clientFrame(true, ws.OpClose, closePayload(1012, "")),
				clientFrame(true, ws.OpClose, closePayload(3000, "")),
				clientFrame(true, ws.OpClose, closePayload(4999, "ok"))),
			want: []frameEvent{
				{Ev: EventClose, Code: 1012, Data: string(closePayload(1012, ""))},
				{Ev: EventClose, Code: 3000, Data: string(closePayload(3000, ""))},
				{Ev: EventClose, Code: 4999, Data: string(closePayload(4999, "ok"))},
			},
		},

		// Errors, each with its close code.
		{
			// Section 5.1: client frames must be masked.
			name: "err/unmasked",
			in:   rawFrame(bitFin|byte(ws.OpText), false, 2, []byte("hi")),
			err:  ErrUnmasked,
			code: 1002,
		},
		{
			// Section 5.2: RSV1 without a negotiated extension.
			name: "err/rsv1",
			in:   rawFrame(bitFin|0x40|byte(ws.OpText), true, 2, []byte("hi")),
			err:  ErrRSV,
			code: 1002,
		},
		{
			// RSV2.
			name: "err/rsv2",
			in:   rawFrame(bitFin|0x20|byte(ws.OpBinary), true, 0, nil),
			err:  ErrRSV,
			code: 1002,
		},
		{
			// RSV3 on a control frame.
			name: "err/rsv3",
			in:   rawFrame(bitFin|0x10|byte(ws.OpPing), true, 0, nil),
			err:  ErrRSV,
			code: 1002,
		},
		{
			// Section 5.5: control payload over 125 bytes.
			name: "err/ping-126",
			in:   clientFrame(true, ws.OpPing, text(126)),
			err:  ErrBadControl,
			code: 1002,
		},
		{
			// Control frames must not be fragmented.
			name: "err/fragmented-ping",
			in:   clientFrame(false, ws.OpPing, nil),
			err:  ErrFragmentedControl,
			code: 1002,
		},
		{
			// Fragmented close.
			name: "err/fragmented-close",
			in:   clientFrame(false, ws.OpClose, closePayload(1000, "")),
			err:  ErrFragmentedControl,
			code: 1002,
		},
		{
			// Section 5.4: continuation with no message open.
			name: "err/continuation-without-start",
			in:   clientFrame(true, ws.OpContinuation, []byte("x")),
			err:  ErrBadContinuation,
			code: 1002,
		},
		{
			// Continuation after a complete message.
			name: "err/continuation-after-final",
			in: concat(clientFrame(true, ws.OpText, []byte("a")),
				clientFrame(true, ws.OpContinuation, []byte("b"))),
			want: []frameEvent{msg(ws.OpText, []byte("a"))},
			err:  ErrBadContinuation,
			code: 1002,
		},
		{
			// A new data frame inside a fragmented message.
			name: "err/data-inside-fragmented",
			in: concat(clientFrame(false, ws.OpText, []byte("a")),
				clientFrame(true, ws.OpBinary, []byte("b"))),
			err:  ErrNestedMessage,
			code: 1002,
		},
		{
			// A declared 2^63 length sets the most significant bit
			// (section 5.2 forbids it): refused at the header, before any
			// payload arrives or is allocated.
			name: "err/len=2^63",
			max:  16 << 20,
			in:   rawFrame(bitFin|byte(ws.OpBinary), true, 1<<63, nil),
			err:  ErrBadLength,
			code: 1002,
		},
		{
			// The largest legal length, 2^63-1, without a limit: nothing
			// can hold it.
			name: "err/len=2^63-1/no-limit",
			in:   rawFrame(bitFin|byte(ws.OpBinary), true, 1<<63-1, nil),
			err:  ErrFrameTooLarge,
			code: 1009,
		},
		{
			// Largest 64-bit value.
			name: "err/len=2^64-1",
			max:  16 << 20,
			in:   rawFrame(bitFin|byte(ws.OpBinary), true, 1<<64-1, nil),
			err:  ErrBadLength,
			code: 1002,
		},
		{
			// One byte over the limit, refused at the header.
			name: "err/over-limit",
			max:  100,
			in:   clientFrame(true, ws.OpText, text(101)),
			err:  ErrFrameTooLarge,
			code: 1009,
		},
		{
			// Fragments that exceed the limit together.
			name: "err/fragments-over-limit",
			max:  100,
			in: concat(clientFrame(false, ws.OpBinary, text(60)),
				clientFrame(true, ws.OpContinuation, text(41))),
			err:  ErrFrameTooLarge,
			code: 1009,
		},
		{
			// Section 8.1: invalid UTF-8 in a text message.
			name: "err/text-invalid-utf8",
			in:   clientFrame(true, ws.OpText, []byte("ok\xff")),
			err:  ErrInvalidUTF8,
			code: 1007,
		},
		{
			// A code point cut short at a fragment boundary.
			name: "err/text-invalid-utf8-split",
			in: concat(clientFrame(false, ws.OpText, []byte("\xe2\x82")),
				clientFrame(true, ws.OpContinuation, []byte("A"))),
			err:  ErrInvalidUTF8,
			code: 1007,
		},
		{
			// A message ending in the middle of a code point.
			name: "err/text-truncated-utf8",
			in:   clientFrame(true, ws.OpText, []byte("\xe2\x82")),
			err:  ErrInvalidUTF8,
			code: 1007,
		},
		{
			// Binary messages are not UTF-8 checked.
			name: "binary/not-utf8",
			in:   clientFrame(true, ws.OpBinary, []byte{0xff, 0xfe}),
			want: []frameEvent{msg(ws.OpBinary, []byte{0xff, 0xfe})},
		},
		{
			// Section 5.5.1: a 1-byte close payload.
			name: "err/close-len=1",
			in:   clientFrame(true, ws.OpClose, []byte{0x03}),
			err:  ErrBadClosePayload,
			code: 1002,
		},
		{
			// Close reason must be UTF-8.
			name: "err/close-reason-utf8",
			in:   clientFrame(true, ws.OpClose, closePayload(1000, "\xc3\x28")),
			err:  ErrInvalidUTF8,
			code: 1007,
		},
	}
	// Section 7.4: codes that must not be on the wire.
	for _, c := range []ws.StatusCode{0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535} {
		cases = append(cases, frameCase{
			name: fmt.Sprintf("err/close-code=%d", c),
			in:   clientFrame(true, ws.OpClose, closePayload(c, "")),
			err:  ErrBadCloseCode,
			code: 1002,
		})
	}
	// Section 5.2: reserved opcodes %x3-7 and %xB-F.
	for op := ws.OpCode(0); op < 16; op++ {
		if !op.IsReserved() {
			continue
		}
		cases = append(cases, frameCase{
			name: fmt.Sprintf("err/reserved-opcode=%#x", byte(op)),
			in:   clientFrame(true, op, nil),
			err:  ErrReservedOpcode,
			code: 1002,
		})
	}
	return cases
}

func TestFrameReader(t *testing.T) {
	for _, tc := range frameCases() {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err != nil {
				if code, _ := CloseCodeOf(tc.err); code != tc.code {
					t.Fatalf("error %v has code %d, want %d", tc.err, code, tc.code)
				}
			}
			for _, d := range deliveries(tc.in) {
				for _, take := range []bool{false, true} {
					got, err := readAll(t, tc.max, d.chunks, take)
					if !errors.Is(err, tc.err) {
						t.Fatalf("%s take=%v: err = %v, want %v", d.name, take, err, tc.err)
					}
					if !reflect.DeepEqual(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
						t.Fatalf("%s take=%v: events\n got %v\nwant %v", d.name, take, got, tc.want)
					}
				}
			}
		})
	}
}

// TestFrameReaderStickyError checks that the reader refuses to go on past
// an error until Reset.
func TestFrameReaderStickyError(t *testing.T) {
	var r FrameReader
	_, _, err := r.Next(rawFrame(bitFin|byte(ws.OpText), false, 0, nil))
	if !errors.Is(err, ErrUnmasked) {
		t.Fatalf("err = %v, want ErrUnmasked", err)
	}
	ok := clientFrame(true, ws.OpText, []byte("x"))
	ev, n, err := r.Next(ok)
	if !errors.Is(err, ErrUnmasked) || n != 0 || ev != EventNone {
		t.Fatalf("after error: %v %d %v, want sticky ErrUnmasked", ev, n, err)
	}
	r.Reset()
	ev, n, err = r.Next(ok)
	if err != nil || ev != EventMessage || n != len(ok) {
		t.Fatalf("after Reset: %v %d %v", ev, n, err)
	}
}

// TestFrameReaderTakeFrame checks the server frame TakeFrame builds for
// each length encoding, with gobwas ws as the reference decoder.
func TestFrameReaderTakeFrame(t *testing.T) {
	for _, size := range []int{0, 1, 125, 126, 65535, 65536, 1 << 20} {
		t.Run(fmt.Sprintf("size=%07d", size), func(t *testing.T) {
			var r FrameReader
			payload := text(size)
			in := clientFrame(true, ws.OpBinary, payload)
			ev, n, err := r.Next(in)
			if err != nil || ev != EventMessage || n != len(in) {
				t.Fatalf("Next = %v, %d, %v", ev, n, err)
			}
			lent := bytes.Clone(r.Frame())
			frame := r.TakeFrame()
			want := AppendFrame(nil, ws.OpBinary, payload)
			if !bytes.Equal(lent, want) {
				t.Fatalf("Frame differs from AppendFrame (len %d vs %d)", len(lent), len(want))
			}
			if !bytes.Equal(frame, want) {
				t.Fatalf("TakeFrame differs from AppendFrame (len %d vs %d)", len(frame), len(want))
			}
			f, err := readFrame(bytes.NewReader(frame))
			if err != nil {
				t.Fatal(err)
			}
			if !f.Header.Fin || f.Header.Masked || f.Header.OpCode != ws.OpBinary || !bytes.Equal(f.Payload, payload) {
				t.Fatalf("ws.ReadFrame header %+v", f.Header)
			}
			if r.TakeFrame() != nil {
				t.Fatal("second TakeFrame returned a frame")
			}
		})
	}
}

// TestFrameReaderAllocs checks that parsing into a reused buffer does not
// allocate, and that a hostile declared length allocates nothing.
func TestFrameReaderAllocs(t *testing.T) {
	in := clientFrame(true, ws.OpText, text(4000))
	var r FrameReader
	allocs := testing.AllocsPerRun(100, func() {
		ev, _, err := r.Next(in)
		if err != nil || ev != EventMessage {
			t.Fatalf("Next = %v, %v", ev, err)
		}
		r.ReleaseMessage()
	})
	if allocs != 0 {
		t.Errorf("reused buffer: %v allocs per message, want 0", allocs)
	}

	huge := rawFrame(bitFin|byte(ws.OpBinary), true, 1<<63, nil)
	allocs = testing.AllocsPerRun(100, func() {
		r.Reset()
		r.MaxMessage = 16 << 20
		if _, _, err := r.Next(huge); !errors.Is(err, ErrBadLength) {
			t.Fatalf("err = %v", err)
		}
	})
	if allocs != 0 {
		t.Errorf("declared 2^63: %v allocs, want 0", allocs)
	}

	// A header announcing 16 MiB followed by nothing must not make the
	// reader allocate 16 MiB.
	var big FrameReader
	hdr := rawFrame(bitFin|byte(ws.OpBinary), true, 16<<20, nil)
	if _, _, err := big.Next(append(hdr, 1)); err != nil {
		t.Fatal(err)
	}
	if c := cap(big.buf); c > MaxServerHeader+firstAlloc {
		t.Errorf("buffer cap %d after 1 byte of a 16 MiB frame, want <= %d", c, MaxServerHeader+firstAlloc)
	}
}

// TestFrameReaderReleaseShrinks checks that a buffer grown by a large
// message is not kept, while a small one is reused.
func TestFrameReaderReleaseShrinks(t *testing.T) {
	var r FrameReader
	if _, _, err := r.Next(clientFrame(true, ws.OpBinary, text(1<<20))); err != nil {
		t.Fatal(err)
	}
	r.ReleaseMessage()
	if r.buf != nil {
		t.Fatalf("1 MiB buffer kept after ReleaseMessage (cap %d)", cap(r.buf))
	}
	if _, _, err := r.Next(clientFrame(true, ws.OpBinary, text(100))); err != nil {
		t.Fatal(err)
	}
	r.ReleaseMessage()
	if r.buf == nil {
		t.Fatal("small buffer dropped by ReleaseMessage")
	}
	r.MaxMessage = 7
	r.Release()
	if r.buf != nil || r.MaxMessage != 7 {
		t.Fatalf("Release kept buffer %v or lost MaxMessage %d", r.buf != nil, r.MaxMessage)
	}
}

// TestFrameReaderFrameShrink: Frame lends the frame and the buffer serves
// the next message after ReleaseMessage (no allocation per message); Shrink
// frees it between messages, but never a message being read (split across
// calls, one byte at a time, or fragmented) or one waiting to be taken.
func TestFrameReaderFrameShrink(t *testing.T) {
	var r FrameReader
	in := clientFrame(true, ws.OpBinary, text(200))
	want := AppendFrame(nil, ws.OpBinary, text(200))
	allocs := testing.AllocsPerRun(100, func() {
		if ev, _, err := r.Next(in); err != nil || ev != EventMessage {
			t.Fatalf("Next = %v, %v", ev, err)
		}
		if !bytes.Equal(r.Frame(), want) {
			t.Fatal("Frame differs from AppendFrame")
		}
		r.ReleaseMessage()
	})
	if allocs != 0 {
		t.Fatalf("Frame and ReleaseMessage: %v allocs per message, want 0", allocs)
	}
	r.Shrink()
	if r.buf != nil {
		t.Fatalf("Shrink between messages kept a buffer of cap %d", cap(r.buf))
	}

	// Not while a message waits to be taken.
	if ev, _, _ := r.Next(in); ev != EventMessage {
		t.Fatalf("Next = %v", ev)
	}
	r.Shrink()
	if !bytes.Equal(r.Frame(), want) {
		t.Fatal("Shrink dropped a message waiting to be taken")
	}
	r.ReleaseMessage()

	// Not in the middle of a message: byte by byte, and fragmented.
	frag := concat(clientFrame(false, ws.OpBinary, text(200)[:50]), clientFrame(true, ws.OpContinuation, text(200)[50:]))
	for _, stream := range [][]byte{in, frag} {
		got := 0
		for i := 0; i < len(stream); {
			ev, n, err := r.Next(stream[i : i+1])
			if err != nil {
				t.Fatal(err)
			}
			i += n
			if ev == EventMessage {
				if !bytes.Equal(r.Frame(), want) {
					t.Fatal("a message shrunk while it was read differs")
				}
				r.ReleaseMessage()
				got++
			}
			r.Shrink()
		}
		if got != 1 {
			t.Fatalf("%d messages, want 1", got)
		}
	}
}

// TestFrameReaderMessageLifetime checks that Message is cleared by the
// next Next and by ReleaseMessage.
func TestFrameReaderMessageLifetime(t *testing.T) {
	var r FrameReader
	in := concat(clientFrame(true, ws.OpText, []byte("a")), clientFrame(true, ws.OpPing, []byte("p")))
	ev, n, _ := r.Next(in)
	if op, p := r.Message(); ev != EventMessage || op != ws.OpText || string(p) != "a" {
		t.Fatalf("Message = %v %q", op, p)
	}
	ev, _, _ = r.Next(in[n:])
	if op, p := r.Message(); ev != EventPing || op != 0 || p != nil {
		t.Fatalf("after next event, Message = %v %q", op, p)
	}
	if got := string(r.Control()); got != "p" {
		t.Fatalf("Control = %q", got)
	}
	if strings.Contains(EventMessage.String(), "(") || !strings.Contains(Event(9).String(), "9") {
		t.Fatalf("Event.String: %q %q", EventMessage, Event(9))
	}
}
