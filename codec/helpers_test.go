package codec

import (
	"encoding/binary"
	"fmt"

	"github.com/gobwas/ws"
)

// testMask is the masking key of test client frames; not all-zero, so a
// missed unmask shows.
var testMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// clientFrame builds a masked client frame, as a browser would send it.
func clientFrame(fin bool, op ws.OpCode, payload []byte) []byte {
	b0 := byte(op)
	if fin {
		b0 |= bitFin
	}
	return rawFrame(b0, true, uint64(len(payload)), payload)
}

// rawFrame builds a frame with first byte b0, the given mask bit, the
// declared length in its minimal encoding and payload (masked with testMask
// when masked is set). The declared length need not match the payload.
func rawFrame(b0 byte, masked bool, length uint64, payload []byte) []byte {
	out := []byte{b0, 0}
	switch {
	case length <= 125:
		out[1] = byte(length)
	case length <= 0xFFFF:
		out[1] = 126
		out = binary.BigEndian.AppendUint16(out, uint16(length))
	default:
		out[1] = 127
		out = binary.BigEndian.AppendUint64(out, length)
	}
	if !masked {
		return append(out, payload...)
	}
	out[1] |= bitMask
	out = append(out, testMask[:]...)
	start := len(out)
	out = append(out, payload...)
	ws.Cipher(out[start:], testMask, 0)
	return out
}

// concat joins byte slices.
func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// delivery is one way of cutting input into reads.
type delivery struct {
	name   string
	chunks [][]byte
}

// deliveries returns the ways every parser test feeds its input: whole, one
// byte at a time, and split in two at every point. Inputs over maxSplit
// bytes get split points near both ends and a sample in between instead of
// all of them, and chunks of 1-7 bytes instead of single bytes when over
// maxBytewise, to keep -race runs short.
func deliveries(data []byte) []delivery {
	const maxSplit = 2048
	const maxBytewise = 1 << 17
	ds := []delivery{{name: "whole", chunks: [][]byte{data}}}
	if len(data) <= maxBytewise {
		ds = append(ds, delivery{name: "bytewise", chunks: cut(data, func(int) int { return 1 })})
	} else {
		ds = append(ds, delivery{name: "chunks1-7", chunks: cut(data, func(i int) int { return 1 + i%7 })})
	}
	for i := 0; i <= len(data); i++ {
		if len(data) > maxSplit && i > 64 && i < len(data)-64 && i%65521 != 0 {
			continue
		}
		ds = append(ds, delivery{
			name:   fmt.Sprintf("split@%d", i),
			chunks: [][]byte{data[:i], data[i:]},
		})
	}
	return ds
}

// cut splits data into chunks whose sizes size(i) gives for the i-th chunk.
func cut(data []byte, size func(i int) int) [][]byte {
	var out [][]byte
	for i := 0; len(data) > 0; i++ {
		n := min(size(i), len(data))
		out = append(out, data[:n])
		data = data[n:]
	}
	return out
}
