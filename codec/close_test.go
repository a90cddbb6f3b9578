package codec

import (
	"errors"
	"fmt"
	"testing"

	"github.com/gobwas/ws"
)

func TestValidCloseCode(t *testing.T) {
	tests := []struct {
		code ws.StatusCode
		want bool
	}{
		{code: 0, want: false},     // no code at all
		{code: 999, want: false},   // below the protocol range
		{code: 1000, want: true},   // normal closure
		{code: 1003, want: true},   // unsupported data
		{code: 1004, want: false},  // reserved
		{code: 1005, want: false},  // no status: never on the wire
		{code: 1006, want: false},  // abnormal: never on the wire
		{code: 1007, want: true},   // invalid payload
		{code: 1011, want: true},   // internal error
		{code: 1012, want: true},   // service restart (IANA)
		{code: 1014, want: true},   // bad gateway (IANA)
		{code: 1015, want: false},  // TLS failure: never on the wire
		{code: 1016, want: false},  // unassigned
		{code: 2999, want: false},  // reserved for extensions
		{code: 3000, want: true},   // first registered-application code
		{code: 4999, want: true},   // last private code
		{code: 5000, want: false},  // beyond the ranges
		{code: 65535, want: false}, // largest value
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			if got := ValidCloseCode(tc.code); got != tc.want {
				t.Fatalf("ValidCloseCode(%d) = %v", tc.code, got)
			}
		})
	}
}

func TestParseClose(t *testing.T) {
	tests := []struct {
		name   string
		in     []byte
		code   ws.StatusCode
		reason string
		err    error
	}{
		{
			// Empty payload reports 1005.
			name: "empty",
			code: ws.StatusNoStatusRcvd,
		},
		{
			// Code and reason.
			name:   "1001",
			in:     closePayload(1001, "bye"),
			code:   1001,
			reason: "bye",
		},
		{
			// One byte.
			name: "short",
			in:   []byte{3},
			err:  ErrBadClosePayload,
		},
		{
			// Reserved code.
			name: "1004",
			in:   closePayload(1004, ""),
			err:  ErrBadCloseCode,
		},
		{
			// Reason not UTF-8.
			name: "bad-utf8",
			in:   closePayload(1000, "\xff"),
			err:  ErrInvalidUTF8,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, reason, err := ParseClose(tc.in)
			if err != tc.err || code != tc.code || string(reason) != tc.reason {
				t.Fatalf("ParseClose = %d %q %v", code, reason, err)
			}
		})
	}
}

func TestCloseCodeOf(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		code   ws.StatusCode
		reason string
	}{
		{
			// A frame error.
			name:   "unmasked",
			err:    ErrUnmasked,
			code:   1002,
			reason: "unmasked client frame",
		},
		{
			// A wrapped sentinel is found in the chain.
			name:   "wrapped",
			err:    fmt.Errorf("conn 7: %w", ErrFrameTooLarge),
			code:   1009,
			reason: "message too big",
		},
		{
			// A header error: 1008.
			name:   "policy",
			err:    ErrHeaderUID,
			code:   1008,
			reason: "invalid uid",
		},
		{
			// Invalid UTF-8: 1007.
			name:   "utf8",
			err:    ErrInvalidUTF8,
			code:   1007,
			reason: "invalid UTF-8",
		},
		{
			// A wrapped auth error.
			name:   "wrapped-policy",
			err:    fmt.Errorf("join: %w", ErrAuth),
			code:   1008,
			reason: "auth failed",
		},
		{
			// Anything else is the server's fault.
			name: "other",
			err:  errors.New("disk full"),
			code: 1011,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, reason := CloseCodeOf(tc.err)
			if code != tc.code || reason != tc.reason {
				t.Fatalf("CloseCodeOf = %d %q", code, reason)
			}
		})
	}
	// The codec's own errors cost no allocation on the way to the close.
	var err error = ErrUnmasked
	if n := testing.AllocsPerRun(100, func() { _, _ = CloseCodeOf(err) }); n != 0 {
		t.Errorf("CloseCodeOf(ErrUnmasked): %v allocations", n)
	}
}
