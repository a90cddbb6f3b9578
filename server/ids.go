package server

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"

	"github.com/dchest/siphash"
)

// idHasher turns uids and channel names into short opaque ids for logs, so
// that logs never show who talks where. The key is random per process: ids
// correlate lines of one run and nothing else.
type idHasher struct{ k0, k1 uint64 }

func newIDHasher() idHasher {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return idHasher{binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])}
}

// id returns 12 hex digits of the keyed SipHash of s.
func (h idHasher) id(s string) string {
	sum := siphash.Hash(h.k0, h.k1, []byte(s))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], sum)
	return hex.EncodeToString(b[:6])
}
