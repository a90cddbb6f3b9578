package server

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mles/mles/ring"
)

// TestIPKey: IPv4 addresses count alone, an IPv4-mapped IPv6 address as
// its IPv4 address, IPv6 addresses by their /64; what is not TCP has no key.
func TestIPKey(t *testing.T) {
	tests := []struct {
		addr net.Addr
		want string // "" when there is no key
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 1}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 2}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:aaaa::1"), Port: 3}, "2001:db8:1:2::"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:bbbb::9"), Port: 4}, "2001:db8:1:2::"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:3::1"), Port: 5}, "2001:db8:1:3::"},
		{&net.UnixAddr{Name: "/tmp/x", Net: "unix"}, ""},
		{&net.TCPAddr{IP: nil}, ""},
	}
	for _, tc := range tests {
		k, ok := ipKey(tc.addr)
		if tc.want == "" {
			if ok {
				t.Errorf("ipKey(%v) = %v, want no key", tc.addr, k)
			}
			continue
		}
		if !ok || k != netip.MustParseAddr(tc.want) {
			t.Errorf("ipKey(%v) = %v %v, want %s", tc.addr, k, ok, tc.want)
		}
	}
}

// TestRegistryRebuild: the idle sweep drops channels without members and
// past the cutoff, keeps the others, and once most of a large map is gone
// rebuilds it (Go maps keep their buckets), so peak follows.
func TestRegistryRebuild(t *testing.T) {
	var r registry
	r.m = make(map[string]*channel)
	const n = 2 * shrinkMin
	old, recent := time.Unix(100, 0).UnixNano(), time.Unix(200, 0).UnixNano()
	keep := 0
	for i := range n {
		ch := &channel{name: fmt.Sprint(i), ring: ring.New(ring.Config{})}
		ch.lastActive.Store(old)
		if i%10 == 0 {
			ch.lastActive.Store(recent) // active after the cutoff
		}
		if i%10 == 1 {
			ch.members = map[memberKey]*conn{{uid: "u"}: nil} // has a member
		}
		if i%10 <= 1 {
			keep++
		}
		r.m[ch.name] = ch
	}
	r.peak = n
	r.sweepIdle(time.Unix(150, 0).UnixNano())
	if got := len(r.m); got != keep {
		t.Fatalf("%d channels after the sweep, want %d (the recent and the joined)", got, keep)
	}
	for name, ch := range r.m {
		if ch.lastActive.Load() != recent && len(ch.members) == 0 {
			t.Fatalf("channel %s kept without members or recent activity", name)
		}
	}
	if r.peak != keep {
		t.Fatalf("peak %d after the sweep emptied most of the map, want %d (rebuilt)", r.peak, keep)
	}
	// A small registry is not rebuilt: peak stays.
	var small registry
	small.m = map[string]*channel{"a": {name: "a", ring: ring.New(ring.Config{})}}
	small.peak = 10
	small.sweepIdle(time.Unix(150, 0).UnixNano())
	if len(small.m) != 0 || small.peak != 10 {
		t.Fatalf("small registry: %d channels, peak %d; want 0 and 10 (no rebuild below shrinkMin)", len(small.m), small.peak)
	}
}
