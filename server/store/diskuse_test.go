package store_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/mles/mles/server/store"
)

// BenchmarkDiskUse stores 100,000 records (100 channels x 1,000, the
// --limit) of random, incompressible payloads of each size and reports the
// store's bytes on disk per record, with the write-ahead log still holding
// them (wal-B/rec) and at rest after a reopen (rest-B/rec). README's disk use
// per message comes from it:
//
//	go test -run '^$' -bench DiskUse -benchtime 1x ./server/store/
func BenchmarkDiskUse(b *testing.B) {
	for _, size := range []int{64, 1024} {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			for b.Loop() {
				dir := b.TempDir()
				st, err := store.Open(store.Options{Dir: dir, Limit: 1000, Sync: store.SyncPolicy{Mode: store.SyncNone}})
				if err != nil {
					b.Fatal(err)
				}
				const channels, per = 100, 1000
				for i := range per {
					for c := range channels {
						p := make([]byte, size)
						_, _ = rand.Read(p)
						r := store.Record{Order: uint64(2*i + 1), Origin: 7, Seq: uint64(i + 1), Op: store.OpText, Payload: p}
						for !st.Append(fmt.Sprintf("channel-%03d", c), r) {
							_ = st.Flush(context.Background()) // the queue is full: let the writer catch up
						}
					}
				}
				if err := st.Close(); err != nil {
					b.Fatal(err)
				}
				wal := dirBytes(b, dir)
				st, err = store.Open(store.Options{Dir: dir, Limit: 1000})
				if err != nil {
					b.Fatal(err)
				}
				if err := st.Close(); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(wal)/(channels*per), "wal-B/rec")
				b.ReportMetric(float64(dirBytes(b, dir))/(channels*per), "rest-B/rec")
			}
		})
	}
}

func dirBytes(b *testing.B, dir string) (n int64) {
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}
