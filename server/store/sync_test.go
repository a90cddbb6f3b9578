package store

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

func TestParseSync(t *testing.T) {
	tests := []struct {
		in   string
		want SyncPolicy
		err  bool
	}{
		{in: "always", want: SyncPolicy{Mode: SyncAlways}},                                    // group commit
		{in: "none", want: SyncPolicy{Mode: SyncNone}},                                        // the OS writes back
		{in: "1s", want: SyncPolicy{Mode: SyncInterval, Interval: time.Second}},               // the default
		{in: "200ms", want: SyncPolicy{Mode: SyncInterval, Interval: 200 * time.Millisecond}}, // any Go duration
		{in: "1m30s", want: SyncPolicy{Mode: SyncInterval, Interval: 90 * time.Second}},
		{in: "", err: true},         // empty
		{in: "0s", err: true},       // no interval
		{in: "-1s", err: true},      // negative
		{in: "Always", err: true},   // case matters, as for flags
		{in: "10", err: true},       // a duration needs its unit
		{in: "interval", err: true}, // the mode's name is not a value
	}
	for _, tt := range tests {
		got, err := ParseSync(tt.in)
		if tt.err {
			if err == nil {
				t.Errorf("ParseSync(%q) = %v, want an error", tt.in, got)
			} else if !bytes.Contains([]byte(err.Error()), []byte(fmt.Sprintf("%q", tt.in))) {
				t.Errorf("ParseSync(%q) error %q does not name the value", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSync(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if back, _ := ParseSync(got.String()); back != got {
			t.Errorf("ParseSync(%q).String() = %q does not parse back", tt.in, got.String())
		}
	}
}

func TestOptionsCheck(t *testing.T) {
	tests := []struct {
		name string
		o    Options
	}{
		{"no dir", Options{}},
		{"negative limit", Options{Dir: t.TempDir(), Limit: -1}},
		{"negative bytes", Options{Dir: t.TempDir(), MaxBytes: -1}},
		{"negative queue", Options{Dir: t.TempDir(), Queue: -1}},
		{"bad mode", Options{Dir: t.TempDir(), Sync: SyncPolicy{Mode: "sometimes"}}},
		{"interval without duration", Options{Dir: t.TempDir(), Sync: SyncPolicy{Mode: SyncInterval}}},
	}
	for _, tt := range tests {
		if s, err := Open(tt.o); err == nil {
			s.Close()
			t.Errorf("%s: Open succeeded", tt.name)
		}
	}
}
