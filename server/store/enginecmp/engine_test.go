package enginecmp

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2"
	bolt "go.etcd.io/bbolt"
)

// engine is what the store needs of either: a batch of puts and deletes, committed with or
// without an fsync, and a full scan.
type engine interface {
	put(k, v []byte) error
	del(k []byte) error
	commit(sync bool) error
	scan(fn func(k, v []byte)) error
	close() error
}

var engines = []string{"bbolt", "pebble"}

func openEngine(name, dir string) (engine, error) {
	if name == "bbolt" {
		return openBolt(dir)
	}
	return openPebble(dir)
}

// appendKey is the store's key: uvarint(len(channel)) channel Order arrival.
func appendKey(dst []byte, channel string, order, arrival uint64) []byte {
	dst = binary.AppendUvarint(dst[:0], uint64(len(channel)))
	dst = append(dst, channel...)
	dst = binary.BigEndian.AppendUint64(dst, order)
	return binary.BigEndian.AppendUint64(dst, arrival)
}

type boltEngine struct {
	db *bolt.DB
	tx *bolt.Tx
	b  *bolt.Bucket
}

var bucket = []byte("history")

func openBolt(dir string) (*boltEngine, error) {
	db, err := bolt.Open(filepath.Join(dir, "history.db"), 0o600, &bolt.Options{
		Timeout:        time.Second,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, err
	}
	return &boltEngine{db: db}, nil
}

func (e *boltEngine) begin() error {
	if e.tx != nil {
		return nil
	}
	tx, err := e.db.Begin(true)
	if err != nil {
		return err
	}
	b, err := tx.CreateBucketIfNotExists(bucket)
	if err != nil {
		tx.Rollback()
		return err
	}
	e.tx, e.b = tx, b
	return nil
}

func (e *boltEngine) put(k, v []byte) error {
	if err := e.begin(); err != nil {
		return err
	}
	return e.b.Put(k, v)
}

func (e *boltEngine) del(k []byte) error {
	if err := e.begin(); err != nil {
		return err
	}
	return e.b.Delete(k)
}

// commit without sync sets NoSync, which bbolt documents as unsafe on power loss: the
// meta page may reach the disk before the pages it points to.
func (e *boltEngine) commit(sync bool) error {
	if e.tx == nil {
		return nil
	}
	e.db.NoSync = !sync
	err := e.tx.Commit()
	e.tx = nil
	return err
}

func (e *boltEngine) scan(fn func(k, v []byte)) error {
	return e.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			fn(k, v)
		}
		return nil
	})
}

func (e *boltEngine) close() error { return e.db.Close() }

type pebbleEngine struct {
	db *pebble.DB
	b  *pebble.Batch
}

func openPebble(dir string) (*pebbleEngine, error) {
	db, err := pebble.Open(dir, &pebble.Options{Logger: quiet{}})
	if err != nil {
		return nil, err
	}
	return &pebbleEngine{db: db, b: db.NewBatch()}, nil
}

type quiet struct{}

func (quiet) Infof(string, ...any)           {}
func (quiet) Errorf(string, ...any)          {}
func (quiet) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }

func (e *pebbleEngine) put(k, v []byte) error { return e.b.Set(k, v, nil) }
func (e *pebbleEngine) del(k []byte) error    { return e.b.Delete(k, nil) }

// commit without sync writes the batch to the log (the OS has it); a later sync makes it and
// everything before it durable, and a torn end of the log is cut at recovery.
func (e *pebbleEngine) commit(sync bool) error {
	opt := pebble.NoSync
	if sync {
		opt = pebble.Sync
	}
	err := e.db.Apply(e.b, opt)
	e.b.Reset()
	return err
}

func (e *pebbleEngine) scan(fn func(k, v []byte)) error {
	it, err := e.db.NewIter(nil)
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return err
		}
		fn(it.Key(), v)
	}
	return it.Close()
}

func (e *pebbleEngine) close() error { return e.db.Close() }
