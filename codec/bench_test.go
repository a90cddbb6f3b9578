package codec

import (
	"fmt"
	"testing"

	"github.com/gobwas/ws"

	"github.com/mles/mles/internal/mlestest"
)

// Sinks against dead-code elimination.
var (
	sinkBytes  []byte
	sinkHeader Header
)

var benchSizes = []int{16, 125, 1024, 16384, 65536}

// BenchmarkFrameReader parses a masked message into the reader's reused
// buffer, lends its server frame and releases it: the path of a message
// that is not kept, or whose frame the server copies into the ring.
func BenchmarkFrameReader(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("size=%05d", size), func(b *testing.B) {
			in := clientFrame(true, ws.OpBinary, text(size))
			var r FrameReader
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.ResetTimer()
			for range b.N {
				ev, n, err := r.Next(in)
				if err != nil || ev != EventMessage || n != len(in) {
					b.Fatalf("Next = %v, %d, %v", ev, n, err)
				}
				sinkBytes = r.Frame()
				r.ReleaseMessage()
			}
		})
	}
}

// BenchmarkFrameReaderTakeFrame parses a masked message and takes it as a
// server frame, the fan-out path of frames above ring.InlineMax: one
// allocation per message, the frame the ring keeps.
func BenchmarkFrameReaderTakeFrame(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("size=%05d", size), func(b *testing.B) {
			in := clientFrame(true, ws.OpText, text(size))
			var r FrameReader
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.ResetTimer()
			for range b.N {
				ev, _, err := r.Next(in)
				if err != nil || ev != EventMessage {
					b.Fatalf("Next = %v, %v", ev, err)
				}
				sinkBytes = r.TakeFrame()
			}
		})
	}
}

// BenchmarkAppendFrame builds a server frame into a reused buffer.
func BenchmarkAppendFrame(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("size=%05d", size), func(b *testing.B) {
			payload := text(size)
			dst := make([]byte, 0, size+MaxServerHeader)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.ResetTimer()
			for range b.N {
				dst = AppendFrame(dst[:0], ws.OpBinary, payload)
			}
			sinkBytes = dst
		})
	}
}

// BenchmarkDecodeHeader decodes a typical header frame with auth.
func BenchmarkDecodeHeader(b *testing.B) {
	for _, tc := range []struct {
		name string
		in   string
	}{
		{name: "auth", in: `{"uid":"alice","channel":"example","auth":"9b3b95527f7c2d80"}`},
		{name: "no-auth", in: `{"uid":"alice","channel":"example"}`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			in := []byte(tc.in)
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			b.ResetTimer()
			for range b.N {
				h, err := DecodeHeader(in, HeaderLimits{})
				if err != nil {
					b.Fatal(err)
				}
				sinkHeader = h
			}
		})
	}
}

// BenchmarkCheckAuth checks a token against MLES_KEY.
func BenchmarkCheckAuth(b *testing.B) {
	h := Header{UID: "alice", Channel: "example", Auth: "afa46b8689dae7a5", HasAuth: true}
	b.ReportAllocs()
	for range b.N {
		if CheckAuth(h, "secret", true) != nil {
			b.Fatal("auth failed")
		}
	}
}

// BenchmarkUpgradeParse parses a complete upgrade request delivered in one
// read, then builds the 101 reply.
func BenchmarkUpgradeParse(b *testing.B) {
	in := []byte(mlestest.UpgradeRequest(exampleHost, sampleKey, []string{
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
		"Origin: https://mles.example",
		"Sec-WebSocket-Extensions: permessage-deflate",
		"Accept-Language: en-US,en;q=0.5",
	}))
	out := make([]byte, 0, 256)
	var p UpgradeParser
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	b.ResetTimer()
	for range b.N {
		p.Reset()
		n, err := p.Parse(in)
		if n != len(in) || err != nil {
			b.Fatalf("Parse = %d, %v", n, err)
		}
		out = AppendUpgradeResponse(out[:0], &p.Request.Key)
	}
	sinkBytes = out
}
