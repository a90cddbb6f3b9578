package codec

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// readFrame reads one whole frame from r with gobwas ws, the reference
// reader: its header with ws.ReadHeader, then exactly Length payload bytes
// (what the deprecated ws.ReadFrame did), unmasked if masked.
func readFrame(r io.Reader) (ws.Frame, error) {
	h, err := ws.ReadHeader(r)
	if err != nil {
		return ws.Frame{}, err
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(r, p); err != nil {
		return ws.Frame{}, err
	}
	if h.Masked {
		ws.Cipher(p, h.Mask, 0)
	}
	return ws.Frame{Header: h, Payload: p}, nil
}

// TestAppendFrame checks every length encoding against gobwas ws, the
// reference reader.
func TestAppendFrame(t *testing.T) {
	for _, size := range []int{0, 1, 125, 126, 127, 65535, 65536, 70000} {
		for _, op := range []ws.OpCode{ws.OpText, ws.OpBinary, ws.OpPing} {
			if op.IsControl() && size > 125 {
				continue
			}
			t.Run(fmt.Sprintf("%v/size=%05d", op, size), func(t *testing.T) {
				payload := text(size)
				out := AppendFrame([]byte("pre"), op, payload)
				if string(out[:3]) != "pre" {
					t.Fatal("dst prefix lost")
				}
				if len(out)-3 != FrameHeaderLen(size)+size {
					t.Fatalf("frame length %d, want %d", len(out)-3, FrameHeaderLen(size)+size)
				}
				f, err := readFrame(bytes.NewReader(out[3:]))
				if err != nil {
					t.Fatal(err)
				}
				if !f.Header.Fin || f.Header.Masked || f.Header.Rsv != 0 || f.Header.OpCode != op || !bytes.Equal(f.Payload, payload) {
					t.Fatalf("header %+v", f.Header)
				}
				// The same header as gobwas writes: minimal length encoding.
				want, err := ws.CompileFrame(ws.NewFrame(op, true, payload))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out[3:], want) {
					t.Fatalf("differs from ws.CompileFrame")
				}
			})
		}
	}
}

func TestAppendClose(t *testing.T) {
	long := strings.Repeat("a", 122) + "€" // the euro sign crosses byte 123
	tests := []struct {
		name   string
		code   ws.StatusCode
		reason string
		want   []byte // payload
	}{
		{
			// Code and reason.
			name:   "policy",
			code:   ws.StatusPolicyViolation,
			reason: "slow consumer",
			want:   closePayload(1008, "slow consumer"),
		},
		{
			// Code only.
			name: "normal",
			code: ws.StatusNormalClosure,
			want: closePayload(1000, ""),
		},
		{
			// Reason cut at a rune boundary to fit 125 bytes.
			name:   "truncated-at-rune",
			code:   ws.StatusGoingAway,
			reason: long,
			want:   closePayload(1001, strings.Repeat("a", 122)),
		},
		{
			// A reason of exactly 123 bytes is kept.
			name:   "max-reason",
			code:   ws.StatusGoingAway,
			reason: strings.Repeat("b", 123),
			want:   closePayload(1001, strings.Repeat("b", 123)),
		},
		{
			// 1005 must not be on the wire: empty payload instead.
			name:   "1005",
			code:   ws.StatusNoStatusRcvd,
			reason: "dropped",
			want:   []byte{},
		},
		{
			// 1006 likewise.
			name: "1006",
			code: ws.StatusAbnormalClosure,
			want: []byte{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := AppendClose(nil, tc.code, tc.reason)
			f, err := readFrame(bytes.NewReader(out))
			if err != nil {
				t.Fatal(err)
			}
			if f.Header.OpCode != ws.OpClose || !f.Header.Fin || !bytes.Equal(f.Payload, tc.want) {
				t.Fatalf("close frame %+v payload %q, want %q", f.Header, f.Payload, tc.want)
			}
			if len(f.Payload) > 2 && !utf8.Valid(f.Payload[2:]) {
				t.Fatal("reason not UTF-8")
			}
		})
	}
	buf := make([]byte, 0, 128)
	if a := testing.AllocsPerRun(100, func() { AppendClose(buf, 1008, "slow consumer") }); a != 0 {
		t.Errorf("AppendClose: %v allocs", a)
	}
}

func TestTruncateReason(t *testing.T) {
	// Strings of 4-byte runes shifted by 0-3 ASCII bytes put the limit at
	// every position within a rune; the cut must land on a boundary and
	// lose less than a rune.
	for shift := 0; shift < 4; shift++ {
		for runes := 0; runes <= 40; runes++ {
			in := strings.Repeat("a", shift) + strings.Repeat("𝄞", runes)
			got := truncateReason(in)
			switch {
			case !utf8.ValidString(got), len(got) > MaxCloseReason, !strings.HasPrefix(in, got):
				t.Fatalf("truncateReason(%d bytes) = %q", len(in), got)
			case len(in) <= MaxCloseReason && got != in:
				t.Fatalf("short reason %d bytes cut to %d", len(in), len(got))
			case len(in) > MaxCloseReason && len(got) <= MaxCloseReason-utf8.UTFMax:
				t.Fatalf("cut %d bytes to %d, more than a rune", len(in), len(got))
			}
		}
	}
}
