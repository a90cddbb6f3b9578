package ring

import (
	"fmt"
	"testing"
)

// sink keeps results alive against dead-code elimination.
var sink int

func BenchmarkPublish(b *testing.B) {
	for _, size := range []int{64, 1024} {
		b.Run(fmt.Sprintf("size=%04d", size), func(b *testing.B) {
			r := New(Config{Size: size})
			m := &Message{Frame: make([]byte, 128)}
			for range size { // allocate every chunk before timing
				r.Publish(m)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(m.Frame)))
			b.ResetTimer()
			for b.Loop() {
				r.Publish(m)
			}
		})
	}
}

// BenchmarkPublishCapped publishes into a ring at its byte cap: every publish also evicts.
func BenchmarkPublishCapped(b *testing.B) {
	budget := NewBudget(1 << 20)
	r := New(Config{Size: 1024, MaxBytes: 64 << 10, Budget: budget})
	msgs := make([]*Message, 2048) // distinct messages, reused once they are long gone
	for i := range msgs {
		msgs[i] = &Message{Frame: make([]byte, 128)}
	}
	for i := range 1024 {
		r.Publish(msgs[i])
	}
	b.ReportAllocs()
	b.SetBytes(128)
	b.ResetTimer()
	i := 0
	for b.Loop() {
		r.Publish(msgs[i&2047])
		i++
	}
}

func BenchmarkPublishParallel(b *testing.B) {
	r := New(Config{Size: 1024})
	for range 1024 {
		r.Publish(&Message{})
	}
	b.ReportAllocs()
	b.SetBytes(128)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		m := &Message{Frame: make([]byte, 128)}
		for pb.Next() {
			r.Publish(m)
		}
	})
}

func BenchmarkRead(b *testing.B) {
	r := New(Config{Size: 1024})
	for range 2048 { // wrapped once: sequences 1024..2047 are live
		r.Publish(&Message{Frame: make([]byte, 128)})
	}
	b.ReportAllocs()
	b.ResetTimer()
	seq := uint64(0)
	for b.Loop() {
		m, st := r.Read(seq&1023 + 1024)
		if st != Ready {
			b.Fatalf("Read: %v", st)
		}
		sink += len(m.Frame)
		seq++
	}
}

// BenchmarkDrain reads n messages per op, as one subscriber's drain of a burst does.
func BenchmarkDrain(b *testing.B) {
	for _, n := range []int{1, 16, 256, 1024} {
		b.Run(fmt.Sprintf("msgs=%04d", n), func(b *testing.B) {
			r := New(Config{Size: 1024})
			for range 1024 {
				r.Publish(&Message{Frame: make([]byte, 128), From: 1})
			}
			head := r.Head()
			b.ReportAllocs()
			b.SetBytes(int64(n * 128))
			b.ResetTimer()
			for b.Loop() {
				for cur := head - uint64(n); cur < head; cur++ {
					m, st := r.Read(cur)
					if st != Ready {
						b.Fatalf("Read(%d): %v", cur, st)
					}
					if m.From != 2 {
						sink += len(m.Frame)
					}
				}
			}
		})
	}
}

// BenchmarkFanout publishes a burst of 16 messages and has every reader drain it, as a
// channel with that many subscribers does per burst (one loop, no wake-ups).
func BenchmarkFanout(b *testing.B) {
	const burst = 16
	for _, readers := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("readers=%04d", readers), func(b *testing.B) {
			r := New(Config{Size: 1024})
			msgs := make([]*Message, burst)
			for i := range msgs {
				msgs[i] = &Message{Frame: make([]byte, 128), From: uint64(i)}
			}
			for range 1024 { // allocate every chunk before timing
				r.Publish(msgs[0])
			}
			cursors := make([]uint64, readers)
			for i := range cursors {
				cursors[i] = r.Head()
			}
			b.ReportAllocs()
			b.SetBytes(burst * 128 * int64(readers))
			b.ResetTimer()
			for b.Loop() {
				for _, m := range msgs {
					r.Publish(m)
				}
				head := r.Head()
				for i := range cursors {
					for ; cursors[i] < head; cursors[i]++ {
						m, st := r.Read(cursors[i])
						if st != Ready {
							b.Fatalf("Read(%d): %v", cursors[i], st)
						}
						if m.From != uint64(i) {
							sink += len(m.Frame)
						}
					}
				}
			}
		})
	}
}

func BenchmarkHistorySpan(b *testing.B) {
	for _, capped := range []int64{0, 1 << 20} {
		b.Run(fmt.Sprintf("maxbytes=%07d", capped), func(b *testing.B) {
			r := New(Config{Size: 1024, History: 200, MaxBytes: capped})
			for range 1024 {
				r.Publish(&Message{Frame: make([]byte, 128)})
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				sink += r.HistorySpan().Len()
			}
		})
	}
}

func BenchmarkNew(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sink += New(Config{}).Size()
	}
}
