package codec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/gobwas/ws"
)

// TestFrameReaderUnmasked: with Unmasked the reader takes server frames
// (written by gobwas/ws, the reference), whole, byte by byte and split at
// every point, fragmented with a ping between, for each length encoding;
// a masked frame is ErrMasked (1002).
func TestFrameReaderUnmasked(t *testing.T) {
	for _, size := range []int{0, 1, 125, 126, 65535, 65536} {
		payload := bytes.Repeat([]byte("abcdefg"), size/7+1)[:size]
		var in bytes.Buffer
		half := size / 2
		_ = ws.WriteFrame(&in, ws.Frame{Header: ws.Header{OpCode: ws.OpBinary, Length: int64(half)}, Payload: payload[:half]})
		_ = ws.WriteFrame(&in, ws.NewPingFrame([]byte("p")))
		_ = ws.WriteFrame(&in, ws.Frame{Header: ws.Header{Fin: true, OpCode: ws.OpContinuation, Length: int64(size - half)}, Payload: payload[half:]})
		_ = ws.WriteFrame(&in, ws.NewTextFrame([]byte("next")))
		ds := deliveries(in.Bytes())
		if size > 1000 {
			ds = ds[:2] // whole and bytewise: the split points add nothing here
		}
		for _, d := range ds {
			r := FrameReader{Unmasked: true}
			var got []string
			for _, chunk := range d.chunks {
				for len(chunk) > 0 {
					ev, n, err := r.Next(chunk)
					if err != nil {
						t.Fatalf("size %d %s: %v", size, d.name, err)
					}
					chunk = chunk[n:]
					switch ev {
					case EventMessage:
						op, p := r.Message()
						got = append(got, fmt.Sprintf("%v:%d:%v", op, len(p), bytes.Equal(p, payload) || string(p) == "next"))
					case EventPing:
						got = append(got, "ping:"+string(r.Control()))
					}
				}
			}
			want := fmt.Sprintf("[ping:p %v:%d:true %v:4:true]", ws.OpBinary, size, ws.OpText)
			if fmt.Sprint(got) != want {
				t.Fatalf("size %d %s: events %v, want %v", size, d.name, got, want)
			}
		}
	}
	r := FrameReader{Unmasked: true}
	if _, _, err := r.Next(clientFrame(true, ws.OpText, []byte("x"))); !errors.Is(err, ErrMasked) {
		t.Fatalf("a masked frame with Unmasked: %v, want ErrMasked", err)
	} else if code, _ := CloseCodeOf(err); code != CloseProtocolError {
		t.Fatalf("ErrMasked code %d, want 1002", code)
	}
}

// TestAppendMaskedFrame: gobwas/ws reads the frame back (masked, with the
// key), and so does the server's own reader.
func TestAppendMaskedFrame(t *testing.T) {
	key := [4]byte{1, 2, 3, 0xfe}
	for _, size := range []int{0, 5, 125, 126, 65536} {
		payload := bytes.Repeat([]byte{0x5a, 0x01, 0xff}, size/3+1)[:size]
		b := AppendMaskedFrame([]byte("keep"), ws.OpBinary, payload, key)
		if string(b[:4]) != "keep" {
			t.Fatal("the prefix was overwritten")
		}
		rd := bytes.NewReader(b[4:])
		var f ws.Frame
		var err error
		if f.Header, err = ws.ReadHeader(rd); err == nil {
			f.Payload = make([]byte, f.Header.Length)
			_, err = io.ReadFull(rd, f.Payload)
		}
		if err != nil || !f.Header.Masked || f.Header.Mask != key || !f.Header.Fin || f.Header.OpCode != ws.OpBinary {
			t.Fatalf("size %d: %+v %v", size, f.Header, err)
		}
		ws.Cipher(f.Payload, f.Header.Mask, 0)
		if !bytes.Equal(f.Payload, payload) {
			t.Fatalf("size %d: payload differs after unmasking", size)
		}
		var r FrameReader
		if ev, n, err := r.Next(b[4:]); err != nil || ev != EventMessage || n != len(b)-4 {
			t.Fatalf("size %d: FrameReader %v %d %v", size, ev, n, err)
		}
		if _, p := r.Message(); !bytes.Equal(p, payload) {
			t.Fatalf("size %d: FrameReader payload differs", size)
		}
	}
}
