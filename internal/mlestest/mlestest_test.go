package mlestest

import "testing"

// TestFreePortUnique: FreePort never hands out a port twice, although the
// kernel often gives the port just closed to the next bind(0) (measured
// here: a repeat within the first hundred calls, one call apart at times).
func TestFreePortUnique(t *testing.T) {
	seen := map[int]bool{}
	for i := range 300 {
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("call %d: port %d again", i, p)
		}
		seen[p] = true
	}
}
