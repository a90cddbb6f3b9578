package codec

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unsafe"

	"github.com/gobwas/ws"
)

func TestDecodeHeader(t *testing.T) {
	long := strings.Repeat("u", DefaultMaxUID+1)
	tests := []struct {
		name string
		in   string
		lim  HeaderLimits
		want Header
		err  error
	}{
		{
			// The header MlesTalk sends.
			name: "valid",
			in:   `{"uid":"alice","channel":"example","auth":"9b3b95527f7c2d80"}`,
			want: Header{UID: "alice", Channel: "example", Auth: "9b3b95527f7c2d80", HasAuth: true},
		},
		{
			// auth absent.
			name: "valid/no-auth",
			in:   ` {"channel":"example","uid":"alice"} `,
			want: Header{UID: "alice", Channel: "example"},
		},
		{
			// auth null counts as absent.
			name: "valid/null-auth",
			in:   `{"uid":"alice","channel":"example","auth":null}`,
			want: Header{UID: "alice", Channel: "example"},
		},
		{
			// An empty auth string is present (and will fail CheckAuth).
			name: "valid/empty-auth",
			in:   `{"uid":"alice","channel":"example","auth":""}`,
			want: Header{UID: "alice", Channel: "example", HasAuth: true},
		},
		{
			// Unknown fields of any type are ignored.
			name: "valid/unknown-fields",
			in:   `{"v":2,"uid":"alice","x":{"a":[1,2,{"b":null}]},"channel":"example","y":"\u00e9"}`,
			want: Header{UID: "alice", Channel: "example"},
		},
		{
			// JSON escapes that decode to printable ASCII are fine.
			name: "valid/escapes",
			in:   `{"uid":"al\u0069ce \"A\"","channel":"a\/b"}`,
			want: Header{UID: `alice "A"`, Channel: "a/b"},
		},
		{
			// Fields at their limits.
			name: "valid/at-limits",
			in:   `{"uid":"` + strings.Repeat("u", 8) + `","channel":"` + strings.Repeat("c", 9) + `"}`,
			lim:  HeaderLimits{MaxUID: 8, MaxChannel: 9},
			want: Header{UID: strings.Repeat("u", 8), Channel: strings.Repeat("c", 9)},
		},
		{
			// go-json matches names case-insensitively when no exact
			// match exists (documented on DecodeHeader; mles-rs refuses).
			name: "valid/case-folded-names",
			in:   `{"UID":"alice","Channel":"example"}`,
			want: Header{UID: "alice", Channel: "example"},
		},
		{
			// auth with an escape takes the slow path.
			name: "valid/escaped-auth",
			in:   `{"uid":"alice","channel":"example","auth":"9b3b\u0039"}`,
			want: Header{UID: "alice", Channel: "example", Auth: "9b3b9", HasAuth: true},
		},
		{
			// Not JSON.
			name: "err/not-json",
			in:   `uid=alice`,
			err:  ErrHeaderJSON,
		},
		{
			// Truncated object.
			name: "err/truncated",
			in:   `{"uid":"alice","channel":"exa`,
			err:  ErrHeaderJSON,
		},
		{
			// Trailing garbage after the object.
			name: "err/trailing",
			in:   `{"uid":"alice","channel":"example"}x`,
			err:  ErrHeaderJSON,
		},
		{
			// JSON, but not an object.
			name: "err/array",
			in:   `["alice","example"]`,
			err:  ErrHeaderJSON,
		},
		{
			// null is not an object.
			name: "err/null",
			in:   `null`,
			err:  ErrHeaderJSON,
		},
		{
			// Empty payload.
			name: "err/empty",
			in:   ``,
			err:  ErrHeaderJSON,
		},
		{
			// uid missing.
			name: "err/no-uid",
			in:   `{"channel":"example"}`,
			err:  ErrHeaderUID,
		},
		{
			// uid empty.
			name: "err/empty-uid",
			in:   `{"uid":"","channel":"example"}`,
			err:  ErrHeaderUID,
		},
		{
			// uid null.
			name: "err/null-uid",
			in:   `{"uid":null,"channel":"example"}`,
			err:  ErrHeaderUID,
		},
		{
			// uid of the wrong type.
			name: "err/number-uid",
			in:   `{"uid":42,"channel":"example"}`,
			err:  ErrHeaderUID,
		},
		{
			// uid not ASCII.
			name: "err/non-ascii-uid",
			in:   `{"uid":"älice","channel":"example"}`,
			err:  ErrHeaderUID,
		},
		{
			// uid with a control character (an escaped newline).
			name: "err/control-uid",
			in:   `{"uid":"ali\nce","channel":"example"}`,
			err:  ErrHeaderUID,
		},
		{
			// channel missing.
			name: "err/no-channel",
			in:   `{"uid":"alice"}`,
			err:  ErrHeaderChannel,
		},
		{
			// channel an object.
			name: "err/object-channel",
			in:   `{"uid":"alice","channel":{}}`,
			err:  ErrHeaderChannel,
		},
		{
			// channel not ASCII.
			name: "err/non-ascii-channel",
			in:   `{"uid":"alice","channel":"\u20ac"}`,
			err:  ErrHeaderChannel,
		},
		{
			// auth a number.
			name: "err/number-auth",
			in:   `{"uid":"alice","channel":"example","auth":123}`,
			err:  ErrHeaderAuth,
		},
		{
			// auth a bool.
			name: "err/bool-auth",
			in:   `{"uid":"alice","channel":"example","auth":true}`,
			err:  ErrHeaderAuth,
		},
		{
			// uid over the default 1 KiB.
			name: "err/long-uid",
			in:   `{"uid":"` + long + `","channel":"example"}`,
			err:  ErrHeaderTooLong,
		},
		{
			// channel over a configured limit.
			name: "err/long-channel",
			in:   `{"uid":"alice","channel":"0123456789"}`,
			lim:  HeaderLimits{MaxChannel: 9},
			err:  ErrHeaderTooLong,
		},
		{
			// auth over its bound.
			name: "err/long-auth",
			in:   `{"uid":"alice","channel":"example","auth":"` + strings.Repeat("a", maxAuth+1) + `"}`,
			err:  ErrHeaderTooLong,
		},
		{
			// Whole frame over MaxBytes.
			name: "err/frame-too-long",
			in:   `{"uid":"alice","channel":"example","pad":"` + strings.Repeat(" ", 100) + `"}`,
			lim:  HeaderLimits{MaxBytes: 64},
			err:  ErrHeaderTooLong,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeHeader([]byte(tc.in), tc.lim)
			if err != tc.err {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if err != nil {
				if code, reason := CloseCodeOf(err); code != ws.StatusPolicyViolation || reason == "" || len(reason) > MaxCloseReason {
					t.Fatalf("CloseCodeOf = %d %q", code, reason)
				}
			}
		})
	}
}

func TestAppendJoinJSON(t *testing.T) {
	tests := []struct {
		name, uid, channel string
		want               string
	}{
		{
			// Plain names.
			name:    "plain",
			uid:     "alice",
			channel: "example",
			want:    `{"uid":"alice","channel":"example"}`,
		},
		{
			// Quotes and backslashes are escaped.
			name:    "escapes",
			uid:     `a"b\c`,
			channel: "tab\there\x01",
			want:    `{"uid":"a\"b\\c","channel":"tab\u0009here\u0001"}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := AppendJoinJSON([]byte("x"), tc.uid, tc.channel)
			if string(got[1:]) != tc.want {
				t.Fatalf("got %s, want %s", got[1:], tc.want)
			}
			// The stdlib decodes it back to the same names, and
			// DecodeHeader too when they are printable.
			var m map[string]string
			if err := json.Unmarshal(got[1:], &m); err != nil || m["uid"] != tc.uid || m["channel"] != tc.channel || len(m) != 2 {
				t.Fatalf("round trip %v %v", m, err)
			}
			frame := AppendJoinFrame(nil, tc.uid, tc.channel)
			if want := AppendFrame(nil, ws.OpText, got[1:]); string(frame) != string(want) {
				t.Fatalf("AppendJoinFrame = %q, want %q", frame, want)
			}
		})
	}
	buf := make([]byte, 0, 128)
	if a := testing.AllocsPerRun(100, func() { AppendJoinFrame(buf, "alice", "example") }); a != 0 {
		t.Errorf("AppendJoinFrame: %v allocs", a)
	}
}

func TestHeaderErrorsAreSentinels(t *testing.T) {
	for _, err := range []error{ErrHeaderBinary, ErrHeaderJSON, ErrHeaderUID, ErrHeaderChannel, ErrHeaderAuth, ErrHeaderTooLong, ErrAuth, ErrAuthMissing} {
		var pe PolicyError
		if !errors.As(err, &pe) || pe.Code() != ws.StatusPolicyViolation || !strings.HasPrefix(err.Error(), "codec: ") {
			t.Errorf("%v: not a 1008 PolicyError with the codec prefix", err)
		}
	}
}

// TestDecodeHeaderDoesNotPin checks that a padded header frame does not
// leave uid and channel pointing into a copy of the whole frame.
func TestDecodeHeaderDoesNotPin(t *testing.T) {
	in := []byte(`{"uid":"alice","channel":"example","pad":"` + strings.Repeat("p", 4000) + `"}`)
	h, err := DecodeHeader(in, HeaderLimits{})
	if err != nil {
		t.Fatal(err)
	}
	// A clone of uid and channel lives in one small allocation; the
	// strings are adjacent there.
	if h.UID != "alice" || h.Channel != "example" ||
		unsafe.StringData(h.Channel) != (*byte)(unsafe.Add(unsafe.Pointer(unsafe.StringData(h.UID)), len(h.UID))) {
		t.Fatalf("uid/channel not cloned: %+v", h)
	}
}

// TestDecodeHeaderGoJSONPanics replays inputs on which goccy/go-json
// v0.10.5 panics or corrupts its pooled state (issues 429, 575, 604, and
// the crasher FuzzDecodeHeader found, kept in testdata/fuzz), alternating
// them as issue 604 does. DecodeHeader must refuse each without panicking
// and still decode a valid header afterwards.
func TestDecodeHeaderGoJSONPanics(t *testing.T) {
	inputs := []string{
		`{"\"":"","\4`,  // FuzzDecodeHeader crasher
		`{"\`,           // dangling escape in a key (issue 604)
		`{"\u`,          // truncated \u escape in a key (issue 429)
		`{"\4":1}`,      // unknown escape in a key (issue 575)
		`{"uid":"a\4"}`, // unknown escape in a value
	}
	for range 50 {
		for _, in := range inputs {
			if _, err := DecodeHeader([]byte(in), HeaderLimits{}); err != ErrHeaderJSON {
				t.Fatalf("DecodeHeader(%q) = %v, want ErrHeaderJSON", in, err)
			}
		}
		h, err := DecodeHeader([]byte(`{"uid":"alice","channel":"example"}`), HeaderLimits{})
		if err != nil || h.UID != "alice" || h.Channel != "example" {
			t.Fatalf("valid header after malformed ones: %+v, %v", h, err)
		}
	}
}
