package tlsbridge

import (
	"crypto/tls"
	"fmt"
	"testing"
)

var sinkInt int

// benchSizes are the payloads: a chat message and a full record.
var benchSizes = []int{64, 16 << 10}

// BenchmarkWrite measures the loop's steady-state encrypt-and-flush:
// Write then AppendOutput into a reused buffer.
func BenchmarkWrite(b *testing.B) {
	for _, vers := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("%s/size=%05d", tls.VersionName(vers), size), func(b *testing.B) {
				p := newPair(b, vers, 0)
				msg := make([]byte, size)
				out := make([]byte, 0, 2*size+1024)
				// Warm up past dynamic record sizing (128 KiB) and pools.
				for range 256 {
					p.srv.Write(msg)
					out = p.srv.AppendOutput(out[:0])
				}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if _, err := p.srv.Write(msg); err != nil {
						b.Fatal(err)
					}
					out = p.srv.AppendOutput(out[:0])
				}
				sinkInt = len(out)
			})
		}
	}
}

// BenchmarkReadPlain measures a record's whole trip through two bridged
// conns: the client encrypts, the server's ReadPlain decrypts in place.
// allocs/op counts both ends.
func BenchmarkReadPlain(b *testing.B) {
	for _, vers := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("%s/size=%05d", tls.VersionName(vers), size), func(b *testing.B) {
				p := newPair(b, vers, 0)
				msg := make([]byte, size)
				out := make([]byte, 0, 2*size+1024)
				n := 0
				fn := func(q []byte) error { n += len(q); return nil }
				for range 256 {
					p.cli.Write(msg)
					out = p.cli.AppendOutput(out[:0])
					p.srv.ReadPlain(out, p.plain, fn)
				}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if _, err := p.cli.Write(msg); err != nil {
						b.Fatal(err)
					}
					out = p.cli.AppendOutput(out[:0])
					if err := p.srv.ReadPlain(out, p.plain, fn); err != nil {
						b.Fatal(err)
					}
				}
				sinkInt = n
			})
		}
	}
}
