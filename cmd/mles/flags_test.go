package main

import (
	"os"
	"strings"
	"testing"
)

// TestParseLimit: -l takes 1..999999 (mles-rs's range); anything else is
// refused with an error that names the flag, from the command line and from
// MLES_LIMIT alike, instead of silently meaning the default.
func TestParseLimit(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  string // MLES_LIMIT
		want int    // History; 0: an error naming the flag
	}{
		{"default", nil, "", 200},
		{"one", []string{"-l", "1"}, "", 1},
		{"max", []string{"--limit", "999999"}, "", 999999},
		{"zero", []string{"-l", "0"}, "", 0},
		{"negative", []string{"-l", "-5"}, "", 0},
		{"too big", []string{"--limit", "1000000"}, "", 0},
		{"zero from the environment", nil, "0", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("MLES_LIMIT", tc.env) // restored after the test
			if tc.env == "" {
				os.Unsetenv("MLES_LIMIT")
			}
			f, _, err := parse(tc.args)
			if tc.want == 0 {
				if err == nil || !strings.Contains(err.Error(), "--limit") {
					t.Fatalf("parse(%q) with MLES_LIMIT=%q: err %v, want an error naming --limit", tc.args, tc.env, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse(%q): %v", tc.args, err)
			}
			if f.opts.History != tc.want {
				t.Fatalf("History = %d, want %d", f.opts.History, tc.want)
			}
		})
	}
}
