package tlsbridge

import (
	"bytes"
	"crypto/tls"
	"testing"
)

// FuzzReadPlainSplits delivers a stream of records in pieces whose sizes the
// fuzzer picks (one byte of input per piece, 0 meaning an empty read), with
// an optional flipped bit: the plaintext must come out whole and in order, or,
// with a flipped bit, ReadPlain must fail (AEAD, record header checks) or
// wait, without delivering anything wrong.
func FuzzReadPlainSplits(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5}, uint16(0), false)
	f.Add([]byte{0, 255, 0, 7}, uint16(40), true)
	f.Add(bytes.Repeat([]byte{1}, 64), uint16(3), true)
	f.Fuzz(func(t *testing.T, sizes []byte, flip uint16, corrupt bool) {
		p := newPair(t, tls.VersionTLS13, 0)
		var want, ct []byte
		for i := range 3 {
			msg := bytes.Repeat([]byte{byte('a' + i)}, 10+i*100)
			want = append(want, msg...)
			ct = append(ct, p.send(p.cli, msg)...)
		}
		if corrupt {
			ct[int(flip)%len(ct)] ^= 0x40
		}
		var err error
		prevEmpty := false
		for i := 0; len(ct) > 0 && err == nil; i++ {
			k := len(ct)
			if len(sizes) > 0 {
				k = min(int(sizes[i%len(sizes)]), len(ct))
			}
			if k == 0 && prevEmpty { // one empty read at a time, then progress
				k = 1
			}
			prevEmpty = k == 0
			piece := bytes.Clone(ct[:k])
			err = p.srv.ReadPlain(piece, p.plain, p.collect)
			poison(piece)
			ct = ct[k:]
		}
		if !bytes.HasPrefix(want, p.got) {
			t.Fatalf("wrong plaintext: %q", p.got)
		}
		if !corrupt && (err != nil || !bytes.Equal(p.got, want)) {
			t.Fatalf("got %d of %d bytes, err %v", len(p.got), len(want), err)
		}
		// A flipped length bit may leave ReadPlain waiting for bytes that never
		// come; it must never accept the whole stream.
		if corrupt && err == nil && bytes.Equal(p.got, want) {
			t.Fatal("corrupted stream accepted")
		}
	})
}

// FuzzHandshakeInput feeds arbitrary bytes to a server handshake: whatever
// happens (failure, waiting for more), Close must end the goroutine and
// nothing may panic.
func FuzzHandshakeInput(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00})
	f.Add([]byte{0x80, 0x2e, 0x01, 0x03, 0x01})
	f.Add(clientHello(f))
	cfg := ServerConfig(Static(testCert()))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := NewConn(Config{TLS: cfg})
		c.Start()
		if err := c.ReadPlain(data, nil, nil); err != nil {
			t.Fatal(err)
		}
		c.Close()
		waitExited(t, c)
	})
}
