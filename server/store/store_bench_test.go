package store

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// The figures in README.md come from these benchmarks (2 cores, Go 1.26.8):
//
//	go test -run '^$' -bench . -benchtime 2s ./server/store/
//
// and those of the engines side by side from the enginecmp module beside this file.

// benchPayload is the payload size of the benchmarks, a chat message.
const benchPayload = 100

// fill writes per records of benchPayload bytes to each of channels channels, in batches of
// the writer's largest size, synchronously (the writer goroutine stays idle), and fsyncs.
func fill(tb testing.TB, s *Store, channels, per int) {
	tb.Helper()
	w := &writer{s: s, b: s.db.NewBatch()}
	ops := make([]op, 0, maxBatchRecords)
	payload := make([]byte, benchPayload)
	for c := range channels {
		name := channelName(c)
		for i := range per {
			ops = append(ops, op{channel: name, rec: Record{Order: uint64(i), Origin: 1, Seq: uint64(i + 1), Op: OpBinary, Payload: payload}})
			if len(ops) == cap(ops) {
				w.apply(ops)
				ops = ops[:0]
			}
		}
	}
	w.apply(ops)
	done := make(chan error, 1)
	w.dirty = true // whatever the policy
	w.sync(done, false)
	if err := <-done; err != nil {
		tb.Fatal(err)
	}
}

func channelName(c int) string { return fmt.Sprintf("channel-%06d", c) }

// BenchmarkWrite is one batch of n records of 100 bytes spread at random over 1,000 channels
// that are at their limit (200), so that each record also deletes its channel's oldest: the
// writer's steady state. none writes the batch to the OS; always also waits for its fsync
// (which the writer itself does not: it writes the next batch meanwhile). ns/record is the
// wall time per record.
func BenchmarkWrite(b *testing.B) {
	const channels, limit = 1000, 200
	for _, mode := range []string{SyncNone, SyncAlways} {
		for _, n := range []int{1, 16, 256, 4096} {
			b.Run(fmt.Sprintf("sync=%s/batch=%04d", mode, n), func(b *testing.B) {
				p, _ := ParseSync(mode)
				s := open(b, Options{Limit: limit, Sync: p})
				fill(b, s, channels, limit)
				names := make([]string, channels)
				for c := range names {
					names[c] = channelName(c)
				}
				w := &writer{s: s, b: s.db.NewBatch()}
				done := make(chan error, 1)
				ops := make([]op, n)
				payload := make([]byte, benchPayload)
				rng := rand.New(rand.NewPCG(1, 2))
				order := uint64(limit)
				b.ReportAllocs()
				b.SetBytes(int64(n * benchPayload))
				b.ResetTimer()
				for range b.N {
					for i := range ops {
						ops[i] = op{channel: names[rng.IntN(channels)], rec: Record{Order: order, Origin: 1, Seq: order, Op: OpBinary, Payload: payload}}
						order++
					}
					w.apply(ops)
					if mode == SyncAlways {
						w.sync(done, false)
						if err := <-done; err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StopTimer()
				if s.err != nil {
					b.Fatal(s.err)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
			})
		}
	}
}

// BenchmarkAppend is the event loops' side: one Append, with the writer running (and
// behind: most of these Appends find the queue full).
func BenchmarkAppend(b *testing.B) {
	s := open(b, Options{Sync: SyncPolicy{Mode: SyncNone}, Logger: slog.New(slog.DiscardHandler)})
	r := Record{Order: 1, Origin: 1, Seq: 1, Op: OpBinary, Payload: make([]byte, benchPayload)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		r.Order = uint64(i)
		s.Append("channel", r)
	}
}

// BenchmarkThroughput appends records of 100 bytes over 1,000 channels as fast as the writer
// takes them (a full queue makes the producer yield and try again), then flushes: ns/op is
// the writer's sustained time per record, end to end, with its batches as large as the load
// makes them (group commit). batch is the mean batch size; full/op counts the tries that
// found the queue full.
func BenchmarkThroughput(b *testing.B) {
	for _, mode := range []string{SyncNone, DefaultSync, SyncAlways} {
		b.Run("sync="+mode, func(b *testing.B) {
			p, _ := ParseSync(mode)
			s := open(b, Options{Sync: p, Logger: slog.New(slog.DiscardHandler)})
			names := make([]string, 1000)
			for c := range names {
				names[c] = channelName(c)
			}
			payload := make([]byte, benchPayload)
			full := 0
			b.ReportAllocs()
			b.SetBytes(benchPayload)
			b.ResetTimer()
			for i := range b.N {
				r := Record{Order: uint64(i), Origin: 1, Seq: uint64(i), Op: OpBinary, Payload: payload}
				for !s.Append(names[i%len(names)], r) {
					full++
					runtime.Gosched()
				}
			}
			if err := s.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			st := s.Stats()
			b.ReportMetric(float64(st.Written)/float64(max(st.Batches, 1)), "batch")
			b.ReportMetric(float64(full)/float64(b.N), "full/op")
		})
	}
}

// BenchmarkLatency is the time from Append to the record being in the OS (1s: what a killed
// process can lose of a lone message), and to its being fsynced (always, through Flush: what a
// power loss can lose), at a light load.
func BenchmarkLatency(b *testing.B) {
	for _, mode := range []string{DefaultSync, SyncAlways} {
		b.Run("sync="+mode, func(b *testing.B) {
			p, _ := ParseSync(mode)
			s := open(b, Options{Sync: p})
			payload := make([]byte, benchPayload)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				s.Append("channel", Record{Order: uint64(i), Origin: 1, Seq: uint64(i), Op: OpBinary, Payload: payload})
				if mode == SyncAlways {
					if err := s.Flush(context.Background()); err != nil {
						b.Fatal(err)
					}
					continue
				}
				for s.written.Load() <= uint64(i) {
					runtime.Gosched()
				}
			}
		})
	}
}

// BenchmarkRecovery is a restart with 100,000 channels of 3 records of 100 bytes: Open
// (which reads every record to rebuild the index) and LoadAll.
func BenchmarkRecovery(b *testing.B) {
	const channels, per = 100_000, 3
	dir := b.TempDir()
	s := open(b, Options{Dir: dir, Sync: SyncPolicy{Mode: SyncNone}})
	fill(b, s, channels, per)
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		s, err := Open(Options{Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		opened := time.Since(start)
		n := 0
		if err := s.LoadAll(func(_ string, recs []Record) { n += len(recs) }); err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		if n != channels*per {
			b.Fatalf("loaded %d records, want %d", n, channels*per)
		}
		b.ReportMetric(float64(opened.Milliseconds()), "open-ms")
	}
}
