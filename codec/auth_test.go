package codec

import (
	"fmt"
	"strings"
	"testing"

	"github.com/dchest/siphash"
)

func TestAuthToken(t *testing.T) {
	tests := []struct {
		name, uid, channel, key string
		want                    string
	}{
		{
			// SPEC 1.2: no MLES_KEY.
			name:    "alice-no-key",
			uid:     "alice",
			channel: "example",
			want:    "9b3b95527f7c2d80",
		},
		{
			// SPEC 1.2: MLES_KEY=secret.
			name:    "alice-secret",
			uid:     "alice",
			channel: "example",
			key:     "secret",
			want:    "afa46b8689dae7a5",
		},
		{
			// SPEC 1.2: MLES_KEY=0123456789.
			name:    "bob-digits",
			uid:     "bob",
			channel: "mles-channel",
			key:     "0123456789",
			want:    "f1d7402d0a290bdc",
		},
		{
			// Inputs longer than the stack buffer: SipHash-2-4 of the
			// concatenation, computed here with siphash and fmt.
			name:    "long",
			uid:     strings.Repeat("u", 700),
			channel: "c",
			want:    fmt.Sprintf("%016x", siphash.Hash(0, 0, []byte(strings.Repeat("u", 700)+"c"))),
		},
		{
			name:    "long-key",
			uid:     "alice",
			channel: strings.Repeat("c", 300),
			key:     strings.Repeat("k", 300),
			want:    fmt.Sprintf("%016x", siphash.Hash(0, 0, []byte("alice"+strings.Repeat("c", 300)+strings.Repeat("k", 300)))),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := AuthToken(tc.uid, tc.channel, tc.key); got != tc.want {
				t.Fatalf("AuthToken = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestCheckAuth(t *testing.T) {
	alice := func(auth string, has bool) Header {
		return Header{UID: "alice", Channel: "example", Auth: auth, HasAuth: has}
	}
	tests := []struct {
		name   string
		h      Header
		key    string
		keySet bool
		err    error
	}{
		{
			// MLES_KEY unset, no auth: accepted.
			name: "unset/absent",
			h:    alice("", false),
		},
		{
			// MLES_KEY unset, correct auth over uid||channel.
			name: "unset/valid",
			h:    alice("9b3b95527f7c2d80", true),
		},
		{
			// Hex digits in upper case compare equal.
			name: "unset/upper-case",
			h:    alice("9B3B95527F7C2D80", true),
		},
		{
			// MLES_KEY unset, wrong auth.
			name: "unset/wrong",
			h:    alice("9b3b95527f7c2d81", true),
			err:  ErrAuth,
		},
		{
			// A stray key value is ignored while keySet is false.
			name: "unset/key-ignored",
			h:    alice("9b3b95527f7c2d80", true),
			key:  "secret",
		},
		{
			// MLES_KEY set, correct auth.
			name:   "set/valid",
			h:      alice("afa46b8689dae7a5", true),
			key:    "secret",
			keySet: true,
		},
		{
			// MLES_KEY set, auth missing.
			name:   "set/absent",
			h:      alice("", false),
			key:    "secret",
			keySet: true,
			err:    ErrAuthMissing,
		},
		{
			// MLES_KEY set, the token for no key.
			name:   "set/unkeyed-token",
			h:      alice("9b3b95527f7c2d80", true),
			key:    "secret",
			keySet: true,
			err:    ErrAuth,
		},
		{
			// MLES_KEY set to the empty string still requires auth.
			name:   "set-empty/absent",
			h:      alice("", false),
			keySet: true,
			err:    ErrAuthMissing,
		},
		{
			// Wrong length.
			name: "short",
			h:    alice("9b3b95527f7c2d8", true),
			err:  ErrAuth,
		},
		{
			// The right token with more after it.
			name: "over-long",
			h:    alice("9b3b95527f7c2d800", true),
			err:  ErrAuth,
		},
		{
			// The right token twice.
			name: "doubled",
			h:    alice("9b3b95527f7c2d809b3b95527f7c2d80", true),
			err:  ErrAuth,
		},
		{
			// Non-hex characters that fold onto hex digits do not match.
			name: "non-hex",
			h:    alice("\x19b3b95527f7c2d8", true),
			err:  ErrAuth,
		},
		{
			// Empty present auth.
			name: "empty",
			h:    alice("", true),
			err:  ErrAuth,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckAuth(tc.h, tc.key, tc.keySet); err != tc.err {
				t.Fatalf("CheckAuth = %v, want %v", err, tc.err)
			}
		})
	}
	h := alice("afa46b8689dae7a5", true)
	if a := testing.AllocsPerRun(100, func() { _ = CheckAuth(h, "secret", true) }); a != 0 {
		t.Errorf("CheckAuth: %v allocs", a)
	}
}
