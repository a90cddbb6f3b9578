package codec

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode"

	"github.com/dchest/siphash"
	"github.com/gobwas/ws"

	"github.com/mles/mles/internal/mlestest"
)

// FuzzFrameReader checks that any input parses to the same events and
// error whole, byte by byte and split at one point, that taken frames
// decode with gobwas ws, and that nothing panics.
func FuzzFrameReader(f *testing.F) {
	f.Add(clientFrame(true, ws.OpText, []byte("hello")), uint16(0), uint(3))
	f.Add(concat(clientFrame(false, ws.OpText, []byte("\xe2\x82")),
		clientFrame(true, ws.OpPing, []byte("p")),
		clientFrame(true, ws.OpContinuation, []byte("\xac"))), uint16(10), uint(7))
	f.Add(clientFrame(true, ws.OpClose, closePayload(1000, "bye")), uint16(0), uint(1))
	f.Add(clientFrame(true, ws.OpBinary, text(300)), uint16(200), uint(4))
	f.Add(rawFrame(bitFin|byte(ws.OpBinary), true, 1<<63, nil), uint16(0), uint(9))
	f.Fuzz(func(t *testing.T, data []byte, maxMessage uint16, split uint) {
		wantEvs, wantErr := readAll(t, int(maxMessage), [][]byte{data}, false)
		var pe ProtocolError
		if wantErr != nil && !errors.As(wantErr, &pe) {
			t.Fatalf("error %v is not a ProtocolError", wantErr)
		}
		for _, ev := range wantEvs {
			if ev.Ev == EventMessage && maxMessage > 0 && len(ev.Data) > int(maxMessage) {
				t.Fatalf("message of %d bytes over limit %d", len(ev.Data), maxMessage)
			}
		}
		s := int(split % uint(len(data)+1))
		for _, chunks := range [][][]byte{
			cut(data, func(int) int { return 1 }),
			{data[:s], data[s:]},
		} {
			for _, take := range []bool{false, true} {
				evs, err := readAll(t, int(maxMessage), chunks, take)
				if err != wantErr || !reflect.DeepEqual(evs, wantEvs) {
					t.Fatalf("chunked (take=%v): %v %v, whole: %v %v", take, evs, err, wantEvs, wantErr)
				}
			}
		}
	})
}

// FuzzUpgradeParser checks that chunking does not change the result, that
// n is within the input, and that an accepted upgrade is sane.
func FuzzUpgradeParser(f *testing.F) {
	f.Add([]byte(mlestest.UpgradeRequest(exampleHost, sampleKey, nil)+"\x81\x80"), uint(17))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), uint(20))
	f.Add([]byte(mlestest.UpgradeRequest(exampleHost, sampleKey, []string{"Sec-WebSocket-Protocol: a, mles-websocket"}, "Sec-WebSocket-Protocol")), uint(5))
	f.Add([]byte("\r\nGET / HTTP/1.0\nUpgrade: websocket\n\n"), uint(3))
	f.Fuzz(func(t *testing.T, data []byte, split uint) {
		want := parseChunks(t, [][]byte{data})
		if want.err != nil {
			var he HandshakeError
			if !errors.As(want.err, &he) || he.Status() < 400 {
				t.Fatalf("error %v is not a 4xx/5xx HandshakeError", want.err)
			}
		}
		if want.n > 0 {
			if want.n > MaxHeaderBlock || data[want.n-1] != '\n' {
				t.Fatalf("n = %d does not end a block within the limit", want.n)
			}
			if want.req.Upgrade && !validKey(want.req.Key[:]) {
				t.Fatalf("upgrade accepted with key %q", want.req.Key)
			}
		}
		s := int(split % uint(len(data)+1))
		for _, chunks := range [][][]byte{
			cut(data, func(int) int { return 1 }),
			{data[:s], data[s:]},
		} {
			got := parseChunks(t, chunks)
			if got.n != want.n || got.err != want.err || got.req != want.req {
				t.Fatalf("chunked %+v, whole %+v", got, want)
			}
		}
	})
}

// FuzzDecodeHeader checks that decoding never panics, that an accepted
// header obeys the rules, and that its join message decodes back to it.
func FuzzDecodeHeader(f *testing.F) {
	f.Add([]byte(`{"uid":"alice","channel":"example","auth":"9b3b95527f7c2d80"}`))
	f.Add([]byte(`{"uid":"a\"b","channel":"c\\d","auth":null,"x":[1,{}]}`))
	f.Add([]byte(`{"uid":1}`))
	f.Add([]byte(`{"uid":"x","channel":"y","auth":"\u0041"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := DecodeHeader(data, HeaderLimits{MaxUID: 64, MaxChannel: 64})
		if err != nil {
			var pe PolicyError
			if !errors.As(err, &pe) || pe.Code() != ws.StatusPolicyViolation {
				t.Fatalf("error %v is not a 1008 PolicyError", err)
			}
			return
		}
		if !printableASCII(h.UID) || !printableASCII(h.Channel) || len(h.UID) > 64 || len(h.Channel) > 64 {
			t.Fatalf("accepted %+v", h)
		}
		if !h.HasAuth && h.Auth != "" {
			t.Fatalf("auth %q without HasAuth", h.Auth)
		}
		join := AppendJoinJSON(nil, h.UID, h.Channel)
		back, err := DecodeHeader(join, HeaderLimits{MaxUID: 64, MaxChannel: 64})
		if err != nil || back.UID != h.UID || back.Channel != h.Channel || back.HasAuth {
			t.Fatalf("join %s decodes to %+v, %v", join, back, err)
		}
		frame := AppendJoinFrame(nil, h.UID, h.Channel)
		if !bytes.Equal(frame[FrameHeaderLen(len(join)):], join) {
			t.Fatalf("join frame %q", frame)
		}
	})
}

// FuzzCheckAuth checks CheckAuth and AuthToken against the SPEC 1.2 rule
// written out plainly (fmt and dchest/siphash over the concatenation):
// with MLES_KEY set auth is required; a present auth must equal the token,
// ignoring hex case; anything else is refused with a 1008 error. valid
// replaces auth with the right token, its case flipped by caseMask, so that
// the fuzzer explores acceptance as well as refusal.
func FuzzCheckAuth(f *testing.F) {
	f.Add("alice", "example", "", "9b3b95527f7c2d80", false, true, false, uint16(0))
	f.Add("alice", "example", "secret", "afa46b8689dae7a5", true, true, false, uint16(0))
	f.Add("bob", "mles-channel", "0123456789", "F1D7402D0A290BDC", true, true, false, uint16(0))
	f.Add("a", "b", "", "", false, false, false, uint16(0))
	f.Add("a", "b", "k", "", true, false, false, uint16(0))
	f.Add("u", "c", "", "zzzzzzzzzzzzzzzz", false, true, true, uint16(0xffff))
	f.Add(string(text(600)), "c", "key", "0123456789abcdef0", true, true, true, uint16(0x5555))
	f.Fuzz(func(t *testing.T, uid, channel, key, auth string, keySet, hasAuth, valid bool, caseMask uint16) {
		effKey := key
		if !keySet {
			effKey = ""
		}
		want := fmt.Sprintf("%016x", siphash.Hash(0, 0, []byte(uid+channel+effKey)))
		if got := AuthToken(uid, channel, effKey); got != want {
			t.Fatalf("AuthToken(%q, %q, %q) = %s, want %s", uid, channel, effKey, got, want)
		}
		if valid {
			b := []byte(want)
			for i := range b {
				if caseMask&(1<<i) != 0 {
					b[i] = byte(unicode.ToUpper(rune(b[i])))
				}
			}
			auth = string(b)
		}
		accept := (!hasAuth && !keySet) ||
			(hasAuth && len(auth) == AuthTokenLen && strings.EqualFold(auth, want))
		err := CheckAuth(Header{UID: uid, Channel: channel, Auth: auth, HasAuth: hasAuth}, key, keySet)
		if (err == nil) != accept {
			t.Fatalf("CheckAuth(uid %q, channel %q, auth %q, hasAuth %v, key %q, keySet %v) = %v, want accept %v",
				uid, channel, auth, hasAuth, key, keySet, err, accept)
		}
		if err != nil {
			var pe PolicyError
			if !errors.As(err, &pe) || pe.Code() != ws.StatusPolicyViolation {
				t.Fatalf("error %v is not a 1008 PolicyError", err)
			}
		}
	})
}
