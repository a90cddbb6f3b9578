package codec

import (
	"crypto/subtle"

	"github.com/dchest/siphash"
)

// Errors of CheckAuth, with close code 1008 (SPEC 1.2).
const (
	// ErrAuth: the auth token does not match.
	ErrAuth PolicyError = "auth failed"
	// ErrAuthMissing: MLES_KEY is set and the header carries no auth.
	ErrAuthMissing PolicyError = "auth required"
)

// AuthTokenLen is the length of an auth token: a 64-bit SipHash in hex.
const AuthTokenLen = 16

// authStack is the concatenation that authSum hashes without allocating;
// longer inputs (uid and channel may reach 1 KiB each) allocate.
const authStack = 512

// authSum returns SipHash-2-4 with an all-zero 128-bit key over the bytes
// uid ‖ channel ‖ key, the function of mles-rs (SPEC 1.2).
func authSum(uid, channel, key string) uint64 {
	var stack [authStack]byte
	b := stack[:0]
	if n := len(uid) + len(channel) + len(key); n > len(stack) {
		b = make([]byte, 0, n)
	}
	b = append(b, uid...)
	b = append(b, channel...)
	b = append(b, key...)
	return siphash.Hash(0, 0, b)
}

// putToken writes sum as 16 lowercase hex digits, as "%016x" would.
func putToken(dst *[AuthTokenLen]byte, sum uint64) {
	for i := AuthTokenLen - 1; i >= 0; i-- {
		dst[i] = hexDigits[sum&0xF]
		sum >>= 4
	}
}

// AuthToken returns the auth token of uid on channel under key (MLES_KEY,
// "" when unset): SipHash-2-4 with an all-zero 128-bit key over uid ‖
// channel ‖ key, as 16 lowercase hex digits. It is bit-compatible with
// mles-rs (SPEC 1.2).
func AuthToken(uid, channel, key string) string {
	var tok [AuthTokenLen]byte
	putToken(&tok, authSum(uid, channel, key))
	return string(tok[:])
}

// CheckAuth applies the auth policy of SPEC 1.2 to a decoded header. keySet
// tells whether MLES_KEY is set (possibly to ""), and key is its value.
// With MLES_KEY set, auth is required (ErrAuthMissing) and must match the
// token over uid ‖ channel ‖ key; unset, a header without auth is accepted
// and a present auth must match the token over uid ‖ channel. Tokens compare
// ignoring hex case, in constant time; a mismatch is ErrAuth.
func CheckAuth(h Header, key string, keySet bool) error {
	if !h.HasAuth {
		if keySet {
			return ErrAuthMissing
		}
		return nil
	}
	if !keySet {
		key = ""
	}
	var want, got [AuthTokenLen]byte
	putToken(&want, authSum(h.UID, h.Channel, key))
	if len(h.Auth) != AuthTokenLen {
		return ErrAuth
	}
	for i := range AuthTokenLen {
		c := h.Auth[i]
		switch {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f':
		case 'A' <= c && c <= 'F':
			c += 'a' - 'A'
		default:
			return ErrAuth
		}
		got[i] = c
	}
	if subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
		return ErrAuth
	}
	return nil
}
