package ring

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"unsafe"
)

// TestNewMessage checks every frame length up to past InlineMax: the copy
// is exact, its capacity is its length (an append can never write into a
// neighbour), one allocation up to InlineMax and two beyond, and the
// object is the smallest class that holds it (no more than a quarter
// wasted past the smallest classes).
func TestNewMessage(t *testing.T) {
	src := make([]byte, InlineMax+100)
	for i := range src {
		src[i] = byte(i*7 + 3)
	}
	for n := 0; n <= len(src); n++ {
		frame := src[:n]
		m := NewMessage(frame, uint64(n)+1)
		if !bytes.Equal(m.Frame, frame) || cap(m.Frame) != n || m.From != uint64(n)+1 {
			t.Fatalf("n=%d: frame %d bytes (cap %d) equal=%v, from %d", n, len(m.Frame), cap(m.Frame), bytes.Equal(m.Frame, frame), m.From)
		}
		if n > 0 && &m.Frame[0] == &frame[0] {
			t.Fatalf("n=%d: the frame is not a copy", n)
		}
		if n%7 != 0 && n != InlineMax && n != InlineMax+1 {
			continue // the allocation checks are slower: a sample of lengths
		}
		want := 1.0
		if n > InlineMax {
			want = 2
		}
		if got := testing.AllocsPerRun(20, func() { _ = NewMessage(frame, 1) }); got != want {
			t.Fatalf("n=%d: %v allocations, want %v", n, got, want)
		}
		if n <= InlineMax {
			var before, after runtime.MemStats
			const k = 200
			keep := make([]*Message, k)
			runtime.ReadMemStats(&before)
			for i := range keep {
				keep[i] = NewMessage(frame, 1)
			}
			runtime.ReadMemStats(&after)
			per := float64(after.TotalAlloc-before.TotalAlloc) / k
			if limit := max(48, 1.25*float64(n+int(unsafe.Sizeof(Message{})))); per > limit {
				t.Fatalf("n=%d: %.0f bytes per message, want at most %.0f", n, per, limit)
			}
			runtime.KeepAlive(keep)
		}
	}
}

func BenchmarkNewMessage(b *testing.B) {
	for _, n := range []int{66, InlineMax} {
		frame := make([]byte, n)
		b.Run(fmt.Sprintf("frame=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				_ = NewMessage(frame, 1)
			}
		})
	}
}
