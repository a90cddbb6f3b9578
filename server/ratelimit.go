package server

import (
	"net/netip"
	"sync"
	"time"
)

// rateLimiter admits at most Options.RateLimit new connections per client
// address (IPv6: per /64, as ipLimiter) per minute (SPEC 3, mles-rs
// --rate-limit): a token bucket per address that holds RateLimit tokens
// and refills at RateLimit per minute, so a burst of RateLimit is allowed
// and the next one waits for a refill. It is asked once per accept, before
// TLS; an address whose bucket is full again has no entry left after the
// next prune, so the map holds only addresses seen in the last minute.
type rateLimiter struct {
	burst  float64
	perSec float64 // tokens per second

	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
	pruned  time.Time
}

type bucket struct {
	tokens float64
	at     time.Time // when tokens was computed
}

func newRateLimiter(perMinute int) *rateLimiter {
	if perMinute <= 0 {
		return nil
	}
	return &rateLimiter{
		burst:   float64(perMinute),
		perSec:  float64(perMinute) / 60,
		buckets: make(map[netip.Addr]*bucket),
	}
}

// allow takes a token for a new connection from a at now, or reports false
// when the address has used its allowance. A nil limiter allows all.
func (r *rateLimiter) allow(a netip.Addr, now time.Time) bool {
	if r == nil {
		return true
	}
	k, ok := addrKey(a)
	if !ok {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.buckets[k]
	if b == nil {
		b = &bucket{tokens: r.burst, at: now}
		r.buckets[k] = b
	}
	b.refill(r, now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (b *bucket) refill(r *rateLimiter, now time.Time) {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(r.burst, b.tokens+d.Seconds()*r.perSec)
		b.at = now
	}
}

// prune drops the buckets that are full again, at most every few seconds;
// the ticker calls it.
func (r *rateLimiter) prune(now time.Time) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.pruned) < 5*time.Second {
		return
	}
	r.pruned = now
	for k, b := range r.buckets {
		if b.refill(r, now); b.tokens >= r.burst {
			delete(r.buckets, k)
		}
	}
}

// len returns the addresses the limiter tracks now.
func (r *rateLimiter) len() int {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.buckets)
}
