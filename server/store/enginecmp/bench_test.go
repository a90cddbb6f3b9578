package enginecmp

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
)

const (
	channels = 1000
	limit    = 200 // records per channel, the server's default -l
	payload  = 100
	value    = 17 + payload // the store's value: version, flags, op, Origin, Seq, payload
)

func names(n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("channel-%06d", i)
	}
	return s
}

// cpuTime is the process's user and system time: it counts the engines' own goroutines
// (Pebble's compactions), which the wall time of one loop does not.
func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkWrite is one batch of n records spread at random over 1,000 channels that are
// at their limit, each record also deleting its channel's oldest (the store's steady state),
// committed with or without an fsync. ns/record is wall time, cpu-ns/record the process's CPU.
func BenchmarkWrite(b *testing.B) {
	for _, eng := range engines {
		for _, sync := range []bool{false, true} {
			for _, n := range []int{1, 16, 256, 4096} {
				b.Run(fmt.Sprintf("%s/sync=%v/batch=%04d", eng, sync, n), func(b *testing.B) {
					e, err := openEngine(eng, b.TempDir())
					if err != nil {
						b.Fatal(err)
					}
					defer e.close()
					chans := names(channels)
					next := make([]uint64, channels)
					v := make([]byte, value)
					var k []byte
					for c, name := range chans {
						for range limit {
							k = appendKey(k, name, next[c], next[c])
							next[c]++
							if err := e.put(k, v); err != nil {
								b.Fatal(err)
							}
						}
						if c%100 == 99 {
							if err := e.commit(false); err != nil {
								b.Fatal(err)
							}
						}
					}
					if err := e.commit(true); err != nil {
						b.Fatal(err)
					}
					rng := rand.New(rand.NewPCG(1, 2))
					b.ReportAllocs()
					b.SetBytes(int64(n * payload))
					cpu0 := cpuTime()
					b.ResetTimer()
					for range b.N {
						for range n {
							c := rng.IntN(channels)
							k = appendKey(k, chans[c], next[c], next[c])
							if err := e.put(k, v); err != nil {
								b.Fatal(err)
							}
							k = appendKey(k, chans[c], next[c]-limit, next[c]-limit)
							if err := e.del(k); err != nil {
								b.Fatal(err)
							}
							next[c]++
						}
						if err := e.commit(sync); err != nil {
							b.Fatal(err)
						}
					}
					b.StopTimer()
					recs := float64(b.N * n)
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/recs, "ns/record")
					b.ReportMetric(float64(cpuTime()-cpu0)/recs, "cpu-ns/record")
				})
			}
		}
	}
}

// BenchmarkRecovery opens a store of 100,000 channels of 3 records and reads it all.
func BenchmarkRecovery(b *testing.B) {
	const channels, per = 100_000, 3
	for _, eng := range engines {
		b.Run(eng, func(b *testing.B) {
			dir := b.TempDir()
			e, err := openEngine(eng, dir)
			if err != nil {
				b.Fatal(err)
			}
			v := make([]byte, value)
			var k []byte
			for c, name := range names(channels) {
				for i := range per {
					k = appendKey(k, name, uint64(i), uint64(i))
					if err := e.put(k, v); err != nil {
						b.Fatal(err)
					}
				}
				if c%1000 == 999 {
					if err := e.commit(false); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := e.commit(true); err != nil {
				b.Fatal(err)
			}
			if err := e.close(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				e, err := openEngine(eng, dir)
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				if err := e.scan(func(k, v []byte) { n++ }); err != nil {
					b.Fatal(err)
				}
				if n != channels*per {
					b.Fatalf("scanned %d records, want %d", n, channels*per)
				}
				if err := e.close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
