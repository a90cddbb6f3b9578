package server

import (
	"net/netip"
	"testing"
	"time"
)

func TestRateLimiter(t *testing.T) {
	r := newRateLimiter(3)
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	v6a := netip.MustParseAddr("2001:db8::1")
	v6b := netip.MustParseAddr("2001:db8::ffff:1") // the same /64
	v6c := netip.MustParseAddr("2001:db8:0:1::1")  // another /64
	now := time.Unix(1_000_000, 0)
	for i := range 3 {
		if !r.allow(a, now) {
			t.Fatalf("connection %d of 3 refused", i+1)
		}
	}
	if r.allow(a, now) {
		t.Fatal("the 4th connection within a minute was allowed")
	}
	if !r.allow(b, now) {
		t.Fatal("another address was refused")
	}
	for i := range 3 {
		addr := v6a
		if i%2 == 1 {
			addr = v6b
		}
		if !r.allow(addr, now) {
			t.Fatalf("IPv6 connection %d of 3 refused", i+1)
		}
	}
	if r.allow(v6b, now) || !r.allow(v6c, now) {
		t.Fatal("IPv6 is not limited per /64")
	}
	// One token comes back every 20 s (3 per minute).
	if r.allow(a, now.Add(19*time.Second)) {
		t.Fatal("a token before its refill")
	}
	if !r.allow(a, now.Add(21*time.Second)) {
		t.Fatal("no token after its refill")
	}
	if !r.allow(netip.Addr{}, now) {
		t.Fatal("an address without an IP was refused")
	}

	// Pruning drops the buckets that are full again: after 30 s those
	// that used one token (b, the other /64), not those that used three.
	if n := r.len(); n != 4 {
		t.Fatalf("%d buckets, want 4", n)
	}
	r.prune(now.Add(30 * time.Second))
	if n := r.len(); n != 2 {
		t.Fatalf("%d buckets after 30 s, want 2", n)
	}
	r.allow(b, now.Add(85*time.Second))
	r.prune(now.Add(90 * time.Second))
	if n := r.len(); n != 1 {
		t.Fatalf("%d buckets after 90 s, want 1 (the address seen at 85 s)", n)
	}
	if newRateLimiter(0) != nil || !(*rateLimiter)(nil).allow(a, now) {
		t.Fatal("RateLimit 0 limits")
	}
}
