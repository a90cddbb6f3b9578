package tlsbridge

import (
	"bytes"
	"errors"
	"testing"
)

// resplit carries the handshake bytes of a one-record hello in records of
// at most size bytes each, as a client may (RFC 8446 5.1: handshake
// messages may be fragmented across records).
func resplit(hello []byte, size int) []byte {
	body := hello[recordHeaderLen:]
	var out []byte
	for len(body) > 0 {
		n := min(size, len(body))
		out = append(out, recordHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, body[:n]...)
		body = body[n:]
	}
	return out
}

func TestHelloComplete(t *testing.T) {
	hello := clientHello(t)
	for _, tc := range []struct {
		name string
		p    []byte
	}{
		{"one record", hello},
		{"records of 1 byte", resplit(hello, 1)},
		{"records of 3 bytes", resplit(hello, 3)},
		{"records of 100 bytes", resplit(hello, 100)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Fed one byte at a time: incomplete up to the last byte.
			for i := 0; i < len(tc.p); i++ {
				if ok, err := HelloComplete(tc.p[:i]); ok || err != nil {
					t.Fatalf("%d of %d bytes: complete=%v err=%v", i, len(tc.p), ok, err)
				}
			}
			if ok, err := HelloComplete(tc.p); !ok || err != nil {
				t.Fatalf("whole: complete=%v err=%v", ok, err)
			}
			// What follows the hello (a client that did not wait) does
			// not change the answer.
			if ok, err := HelloComplete(append(bytes.Clone(tc.p), 0x14, 3, 3, 0, 1, 1)); !ok || err != nil {
				t.Fatalf("with more: complete=%v err=%v", ok, err)
			}
		})
	}
}

func TestHelloCompleteRefuses(t *testing.T) {
	hello := clientHello(t)
	withType := func(typ byte) []byte {
		p := bytes.Clone(hello)
		p[recordHeaderLen] = typ
		return p
	}
	huge := []byte{recordHandshake, 3, 1, 0, 4, typeClientHello, 0x01, 0x00, 0x01} // 65537-byte message
	for _, tc := range []struct {
		name string
		p    []byte
		want error
	}{
		{"plain http", []byte("GET / HTTP/1.1\r\n"), ErrNotHandshake},
		{"one garbage byte", []byte{0x00}, ErrNotHandshake},
		{"application data", []byte{0x17, 3, 3, 0, 10}, ErrNotHandshake},
		{"ssl 2 version", []byte{recordHandshake, 2, 0, 0, 10}, ErrNotHandshake},
		{"empty record", []byte{recordHandshake, 3, 1, 0, 0}, ErrBadClientHello},
		{"record over 16 KiB", []byte{recordHandshake, 3, 1, 0x40, 0x01}, ErrBadClientHello},
		{"server hello", withType(2), ErrBadClientHello},
		{"over 64 KiB", huge, ErrBadClientHello},
		{"alert inside", append(resplit(hello, 10)[:15], 0x15, 3, 3, 0, 2), ErrBadClientHello},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if ok, err := HelloComplete(tc.p); ok || !errors.Is(err, tc.want) {
				t.Fatalf("complete=%v err=%v, want %v", ok, err, tc.want)
			}
		})
	}
	if !LooksLikeHTTP([]byte("GET / HTTP/1.1")) || LooksLikeHTTP([]byte("GET ")) || LooksLikeHTTP(hello) {
		t.Fatal("LooksLikeHTTP")
	}
}

func FuzzHelloComplete(f *testing.F) {
	hello := clientHello(f)
	f.Add(hello)
	f.Add(resplit(hello, 7))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, p []byte) {
		ok, err := HelloComplete(p)
		if ok && err != nil {
			t.Fatal("complete with an error")
		}
		if err != nil || ok {
			// The answer is final: more bytes do not change it.
			ok2, err2 := HelloComplete(append(bytes.Clone(p), 0x16, 3, 1, 0, 1, 0))
			if ok2 != ok || (err == nil) != (err2 == nil) {
				t.Fatalf("answer changed with more bytes: %v %v -> %v %v", ok, err, ok2, err2)
			}
		}
	})
}

func BenchmarkHelloComplete(b *testing.B) {
	hello := clientHello(b)
	b.ReportAllocs()
	for b.Loop() {
		if ok, _ := HelloComplete(hello); !ok {
			b.Fatal("incomplete")
		}
	}
}
