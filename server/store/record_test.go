package store

import (
	"bytes"
	"testing"
)

func TestKeyRoundTrip(t *testing.T) {
	for _, ch := range []string{"", "a", "\xff\xff", string(make([]byte, 200))} {
		k := appendKey(nil, ch, 1<<63+5, 42)
		got, order, arrival, ok := parseKey(k)
		if !ok || string(got) != ch || order != 1<<63+5 || arrival != 42 {
			t.Errorf("parseKey(appendKey(%q)) = %q, %d, %d, %v", ch, got, order, arrival, ok)
		}
		p := appendPrefix(nil, ch)
		if !bytes.HasPrefix(k, p) || bytes.Compare(k, prefixEnd(p)) >= 0 {
			t.Errorf("key of %q outside [prefix, prefixEnd)", ch)
		}
	}
}

func TestValueRoundTrip(t *testing.T) {
	for _, r := range []Record{
		{Origin: 1<<64 - 1, Seq: 1, Op: OpText, Payload: []byte("hello")},
		{Origin: 0, Seq: 1<<64 - 1, Op: OpBinary, Join: true, Payload: nil},
	} {
		var got Record
		if err := parseValue(appendValue(nil, &r), &got); err != nil {
			t.Fatal(err)
		}
		if got.Origin != r.Origin || got.Seq != r.Seq || got.Op != r.Op || got.Join != r.Join || !bytes.Equal(got.Payload, r.Payload) {
			t.Errorf("round trip: got %+v, want %+v", got, r)
		}
	}
}

func TestValueErrors(t *testing.T) {
	good := appendValue(nil, &Record{Origin: 7, Seq: 300, Op: OpText, Payload: []byte("p")})
	tests := []struct {
		name string
		v    []byte
		want error
	}{
		{"empty", nil, errShortValue},
		{"header only", good[:valueHeader], errShortValue},
		{"version", append([]byte{2}, good[1:]...), errValueVersion},
		{"flags", append([]byte{1, 0x80}, good[2:]...), errValueFlags},
		{"op", append([]byte{1, 0, 9}, good[3:]...), errValueOp},
		{"seq cut", good[:valueHeader+1], errValueSeq}, // 300 takes two bytes
	}
	for _, tt := range tests {
		var r Record
		if err := parseValue(tt.v, &r); err != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
}

// FuzzParse feeds arbitrary keys and values to the decoders: they never panic, and what they
// accept encodes back to the same bytes.
func FuzzParse(f *testing.F) {
	f.Add(appendKey(nil, "channel", 1, 2), appendValue(nil, &Record{Origin: 3, Seq: 4, Op: OpText, Payload: []byte("x")}))
	f.Add([]byte{0x80}, []byte{1, 1, 2})
	f.Add([]byte{0x81, 0x00, 'c', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2}, []byte{}) // a length in two bytes
	f.Fuzz(func(t *testing.T, k, v []byte) {
		if ch, order, arrival, ok := parseKey(k); ok {
			if back := appendKey(nil, string(ch), order, arrival); !bytes.Equal(back, k) {
				t.Fatalf("key %x: re-encoded as %x", k, back)
			}
		}
		var r Record
		if parseValue(v, &r) == nil {
			back := appendValue(nil, &r)
			var r2 Record
			if err := parseValue(back, &r2); err != nil || r2.Origin != r.Origin || r2.Seq != r.Seq || !bytes.Equal(r2.Payload, r.Payload) {
				t.Fatalf("value %x: re-encoded %x decodes to %+v, %v", v, back, r2, err)
			}
		}
	})
}
