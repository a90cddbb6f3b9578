package server

import (
	"net"
	"net/netip"
	"sync"
)

// ipLimiter counts open connections per client address for
// Options.MaxConnsPerIP. IPv6 clients are counted per /64, the block one
// host usually holds, so that a host cannot step around the limit by
// rotating addresses. It is touched once at accept and once at close, never
// per message; the mutex is never held across I/O.
type ipLimiter struct {
	max int32

	mu     sync.Mutex
	counts map[netip.Addr]int32
}

func newIPLimiter(max int) *ipLimiter {
	if max <= 0 {
		return nil
	}
	return &ipLimiter{max: int32(max), counts: make(map[netip.Addr]int32)}
}

// ipKey is the counting key of a remote address, ok false when it has none
// (not TCP).
func ipKey(a net.Addr) (netip.Addr, bool) {
	return addrKey(tcpAddrPort(a).Addr())
}

// addrKey is the counting key of a client address: IPv4 as is (mapped
// IPv6 unmapped), IPv6 its /64; ok false for the zero Addr.
func addrKey(ip netip.Addr) (netip.Addr, bool) {
	if !ip.IsValid() {
		return netip.Addr{}, false
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		ip = p.Addr()
	}
	return ip, true
}

// tcpAddrPort is a's address and port, IPv4 unmapped; the zero AddrPort
// when a is not TCP.
func tcpAddrPort(a net.Addr) netip.AddrPort {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// acquire counts a new connection from a, or reports false when a is at the
// limit. A nil limiter admits everything.
func (l *ipLimiter) acquire(a netip.Addr) bool {
	if l == nil {
		return true
	}
	k, ok := addrKey(a)
	if !ok {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.counts[k]
	if n >= l.max {
		return false
	}
	l.counts[k] = n + 1
	return true
}

// release uncounts a connection that acquire admitted.
func (l *ipLimiter) release(a netip.Addr) {
	if l == nil {
		return
	}
	k, ok := addrKey(a)
	if !ok {
		return
	}
	l.mu.Lock()
	if n := l.counts[k]; n > 1 {
		l.counts[k] = n - 1
	} else {
		delete(l.counts, k) // no entry outlives its last connection
	}
	l.mu.Unlock()
}

// len is the number of addresses with open connections (tests).
func (l *ipLimiter) len() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.counts)
}
