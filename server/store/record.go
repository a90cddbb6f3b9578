package store

import (
	"bytes"
	"encoding/binary"
	"math/bits"
)

// The WebSocket opcodes a Record may carry (RFC 6455 section 5.2).
const (
	OpText   byte = 1
	OpBinary byte = 2
)

// Record is one history entry of a channel: a data message or a stored join frame (SPEC 1.3).
type Record struct {
	// Order is the server's order within the channel. It increases; several joins may share
	// one Order, and records of equal Order keep the order in which they were appended.
	Order uint64
	// Origin and Seq are the message id: Origin is random per channel instance of the server
	// that accepted the message from a client, Seq its sequence within Origin.
	Origin uint64
	Seq    uint64
	// Op is the frame type, OpText or OpBinary.
	Op byte
	// Join marks a stored join frame (history only); otherwise the record is a data message.
	Join bool
	// Payload is the frame's payload. It is immutable: Append keeps the slice until the
	// record is written and never modifies it.
	Payload []byte
}

// Keys. A record of channel c lives at
//
//	uvarint(len(c)) c  Order (8 bytes, big-endian)  arrival (8 bytes, big-endian)
//
// The length prefix makes the channel part self-delimiting, so no channel's keys are a prefix
// of another's whatever bytes the names hold, and a channel's records are one contiguous range
// sorted by Order. arrival is a counter the store assigns in Append order (unique across the
// store and increasing across restarts), which keeps ties of Order in Append order.
const keySuffix = 16 // Order and arrival

// metaKey holds the next arrival counter (8 bytes, big-endian), set by every batch that
// appends: Open learns from it where the replay of the log ended even when the newest records
// were dropped since (durable.go). It lies outside every channel's range: it starts with the
// length 0 in two bytes ("\x80\x00"), and a channel's prefix holds its length in as few bytes
// as it takes, so no prefix starts it, no Drop's range delete covers it, and parseKey rejects
// it.
var metaKey = []byte("\x80\x00mles-arrival")

// appendPrefix appends the key prefix of channel: all its keys start with it.
func appendPrefix(dst []byte, channel string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(channel)))
	return append(dst, channel...)
}

// appendKey appends the key of a record of channel.
func appendKey(dst []byte, channel string, order, arrival uint64) []byte {
	dst = appendPrefix(dst, channel)
	dst = binary.BigEndian.AppendUint64(dst, order)
	return binary.BigEndian.AppendUint64(dst, arrival)
}

// prefixEnd returns the smallest key above every key that starts with prefix, for a range
// delete. A prefix always holds a byte below 0xff (the last byte of its uvarint), so the
// increment below stops inside it.
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil // unreachable: see above
}

// parseKey splits a key into the channel name (aliasing k), Order and arrival. ok is false
// when k is not a key this package writes.
func parseKey(k []byte) (channel []byte, order, arrival uint64, ok bool) {
	n, w := binary.Uvarint(k)
	// A length in more bytes than it needs would name the channel outside its range.
	if w <= 0 || w != (bits.Len64(n|1)+6)/7 || n > uint64(len(k)) || uint64(len(k)-w) != n+keySuffix {
		return nil, 0, 0, false
	}
	channel = k[w : w+int(n)]
	rest := k[w+int(n):]
	return channel, binary.BigEndian.Uint64(rest), binary.BigEndian.Uint64(rest[8:]), true
}

// Values. Version 1 is
//
//	version (1)  flags (1: bit 0 join)  op (1)  Origin (8, big-endian)  uvarint(Seq)  payload
//
// Origin is random, so it is stored whole; Seq counts from 1 and is short as a uvarint. The
// version byte lets a later layout be read beside this one.
const (
	valueVersion = 1
	flagJoin     = 1 << 0
	valueHeader  = 3 + 8 // the fixed part, before Seq
)

// appendValue appends the value of r.
func appendValue(dst []byte, r *Record) []byte {
	var flags byte
	if r.Join {
		flags |= flagJoin
	}
	dst = append(dst, valueVersion, flags, r.Op)
	dst = binary.BigEndian.AppendUint64(dst, r.Origin)
	dst = binary.AppendUvarint(dst, r.Seq)
	return append(dst, r.Payload...)
}

// valueError says why a stored value does not decode.
type valueError string

func (e valueError) Error() string { return "store: bad record value: " + string(e) }

const (
	errShortValue   valueError = "too short"
	errValueVersion valueError = "unknown version"
	errValueFlags   valueError = "unknown flags"
	errValueOp      valueError = "opcode is neither text nor binary"
	errValueSeq     valueError = "bad sequence"
)

// parseValue decodes v into r's Origin, Seq, Op, Join and Payload; Payload aliases v.
func parseValue(v []byte, r *Record) error {
	if len(v) < valueHeader+1 {
		return errShortValue
	}
	if v[0] != valueVersion {
		return errValueVersion
	}
	if v[1]&^flagJoin != 0 {
		return errValueFlags
	}
	if v[2] != OpText && v[2] != OpBinary {
		return errValueOp
	}
	seq, w := binary.Uvarint(v[valueHeader:])
	if w <= 0 {
		return errValueSeq
	}
	r.Join = v[1]&flagJoin != 0
	r.Op = v[2]
	r.Origin = binary.BigEndian.Uint64(v[3:])
	r.Seq = seq
	r.Payload = v[valueHeader+w:]
	return nil
}
