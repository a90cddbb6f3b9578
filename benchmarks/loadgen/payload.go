package main

import "time"

// Payload layout, all fixed-width lower-case hex after the marker; see doc.go.
const (
	markerLen  = 3 + 4 // "~LG" + run id
	pubOff     = markerLen
	pubLen     = 6
	seqOff     = pubOff + pubLen
	seqLen     = 10
	timeOff    = seqOff + seqLen
	timeLen    = 16
	minPayload = timeOff + timeLen // 39 bytes
)

const hexDigits = "0123456789abcdef"

// clock is the run's monotonic time base: every intended and receive time is
// nanoseconds since base, so sender and receiver (one process) agree exactly.
type clock struct{ base time.Time }

func (c clock) now() int64 { return int64(time.Since(c.base)) }

// newMarker returns "~LG" followed by the run id in 4 hex digits.
func newMarker(run uint16) [markerLen]byte {
	var m [markerLen]byte
	copy(m[:], "~LG")
	putHex(m[3:7], uint64(run))
	return m
}

// putHex writes v as len(b) lower-case hex digits, most significant first.
func putHex(b []byte, v uint64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = hexDigits[v&15]
		v >>= 4
	}
}

// parseHex reads b as lower-case hex; ok is false on any other byte.
func parseHex(b []byte) (v uint64, ok bool) {
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// fillPayload writes a payload of len(p) bytes (at least minPayload) into p.
// The padding after the fields is written once by the caller (initPayload) and
// left alone here: only the fields change from one message to the next.
func fillPayload(p []byte, pub int, seq uint64, intended int64) {
	putHex(p[pubOff:pubOff+pubLen], uint64(pub))
	putHex(p[seqOff:seqOff+seqLen], seq)
	putHex(p[timeOff:timeOff+timeLen], uint64(intended))
}

// initPayload returns a payload buffer of size bytes with marker and padding.
func initPayload(marker [markerLen]byte, size int) []byte {
	if size < minPayload {
		size = minPayload
	}
	p := make([]byte, size)
	copy(p, marker[:])
	for i := minPayload; i < size; i++ {
		p[i] = 'x'
	}
	return p
}

// message is one decoded payload.
type message struct {
	pub      int
	seq      uint64
	intended int64
}

// decodePayload decodes the fields that follow a marker already matched at
// p[0:markerLen]. ok is false when p is too short or not hex.
func decodePayload(p []byte) (m message, ok bool) {
	if len(p) < minPayload {
		return m, false
	}
	pub, ok1 := parseHex(p[pubOff : pubOff+pubLen])
	seq, ok2 := parseHex(p[seqOff : seqOff+seqLen])
	t, ok3 := parseHex(p[timeOff : timeOff+timeLen])
	if !ok1 || !ok2 || !ok3 {
		return m, false
	}
	return message{pub: int(pub), seq: seq, intended: int64(t)}, true
}
