package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"
)

// Options configures a Server. The zero value of every field means its
// documented default; Validate fills defaults in and rejects impossible
// combinations, so New sees one consistent set.
type Options struct {
	// Addr is the listen address, host:port. Default ":443" (mles-rs listens
	// on every interface on port 443).
	Addr string

	// TLS is the server TLS configuration. Nil with Plain false means the
	// caller forgot to choose a certificate source: Validate rejects it
	// (cmd/mles builds a self-signed one for the no-flag default).
	TLS *tls.Config
	// Plain serves WebSocket without TLS, for a TLS-terminating proxy in
	// front and for local testing.
	Plain bool

	// Reactors is the number of gnet event loops. Default runtime.NumCPU().
	Reactors int
	// ReusePort sets SO_REUSEPORT on the listener (one listener per loop).
	ReusePort bool
	// LockOSThread pins each event loop to an OS thread.
	LockOSThread bool
	// ReadBufferCap is gnet's per-loop read buffer in bytes. Default 64 KiB.
	ReadBufferCap int
	// WriteBufferCap is the per-connection outbound buffer gnet starts with,
	// in bytes. Default 4 KiB (it grows on demand).
	WriteBufferCap int

	// History is the number of messages kept per channel (mles-rs -l/--limit).
	// Default 200, range 1..999999.
	History int
	// HistoryBytes caps the history of one channel in bytes. Default 64 MiB.
	HistoryBytes int64
	// HistoryTotalBytes caps the history of all channels in bytes. Default 1 GiB.
	HistoryTotalBytes int64
	// RingSize is the slot count of each channel ring, a power of two above
	// History; it bounds how far a reader may lag. Default max(1024, 2*History)
	// rounded up to a power of two.
	RingSize int

	// MaxMessage is the largest accepted message in bytes (1009 beyond it).
	// Default 16 MiB.
	MaxMessage int
	// MaxConns bounds concurrent connections; extras are closed at accept.
	// Default 0: unlimited.
	MaxConns int
	// MaxConnsPerIP bounds concurrent connections from one client address
	// (IPv4, or IPv6 /64); extras are closed at accept, before TLS.
	// Default 0: unlimited.
	MaxConnsPerIP int
	// MaxPending bounds a subscriber's unsent outbound bytes before it is
	// paused and, past SlowGrace, closed as a slow consumer. Default 4 MiB.
	MaxPending int
	// SlowGrace is how long a subscriber may stay above MaxPending. Default 10 s.
	SlowGrace time.Duration
	// MaxUID and MaxChannel bound the header frame's names in bytes. Default 1 KiB.
	MaxUID, MaxChannel int
	// MaxHandshakes bounds concurrent TLS handshakes. A connection claims a
	// slot once its whole ClientHello is in; one client address (IPv4,
	// IPv6 /64) holds at most half of the slots, and addresses waiting for
	// one are served in turn. Default 256 x Reactors.
	MaxHandshakes int

	// HelloTimeout bounds the wait for a TLS client's whole ClientHello,
	// from accept: a silent or truncated connection is closed after it.
	// Default 5 s.
	HelloTimeout time.Duration
	// HandshakeTimeout bounds the TLS handshake and the HTTP upgrade
	// together, from the moment the connection holds a handshake slot; the
	// wait for a slot is bounded by it separately. Default 10 s.
	HandshakeTimeout time.Duration
	// HeaderTimeout bounds the wait for the Mles header frame after the
	// upgrade. Default 30 s.
	HeaderTimeout time.Duration
	// PingInterval is the liveness ping period. Default 24 s.
	PingInterval time.Duration
	// PingMax is the number of pings without any inbound frame after which
	// the connection is closed. Default 3.
	PingMax int
	// ChannelIdle is how long an empty channel keeps its history. Default 30 days.
	ChannelIdle time.Duration
	// DrainTimeout bounds graceful shutdown: members receive what was
	// accepted before it (for three quarters of it at most), then 1001.
	// Default 5 s.
	DrainTimeout time.Duration
	// CloseLinger is how long a closing connection keeps flushing its
	// queued output (the rest of a frame, then the close frame) before it
	// is closed hard. Default 3 s.
	CloseLinger time.Duration
	// TickInterval is the timer resolution of deadlines and sweeps. Default 1 s.
	TickInterval time.Duration
	// ReleaseQuiet is how long no new connection must open before the
	// server returns its free heap pages to the OS (once per quiet period).
	// Default 2 s; negative disables.
	ReleaseQuiet time.Duration

	// ReplaceDuplicate closes an existing session with the same (uid,
	// channel, auth) and admits the new one, instead of refusing the new one.
	ReplaceDuplicate bool
	// Key is MLES_KEY; KeySet tells whether it was set at all (an empty
	// MLES_KEY still requires auth).
	Key    string
	KeySet bool

	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
}

// Errors returned by Validate.
var (
	ErrNoTLS        = errors.New("server: no TLS configuration and not plain")
	ErrHistoryRange = errors.New("server: history limit out of range 1..999999")
)

// Validate fills in defaults and checks the options.
func (o *Options) Validate() error {
	if o.Addr == "" {
		o.Addr = ":443"
	}
	if o.TLS == nil && !o.Plain {
		return ErrNoTLS
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Reactors, runtime.NumCPU())
	def(&o.ReadBufferCap, 64<<10)
	def(&o.WriteBufferCap, 4<<10)
	if o.History == 0 {
		o.History = 200
	}
	if o.History < 1 || o.History > 999999 {
		return ErrHistoryRange
	}
	if o.HistoryBytes <= 0 {
		o.HistoryBytes = 64 << 20
	}
	if o.HistoryTotalBytes <= 0 {
		o.HistoryTotalBytes = 1 << 30
	}
	minRing := max(1024, 2*o.History)
	if o.RingSize < minRing {
		o.RingSize = minRing
	}
	o.RingSize = ceilPow2(o.RingSize)
	def(&o.MaxMessage, 16<<20)
	def(&o.MaxPending, 4<<20)
	defd(&o.SlowGrace, 10*time.Second)
	def(&o.MaxUID, 1024)
	def(&o.MaxChannel, 1024)
	def(&o.MaxHandshakes, 256*o.Reactors)
	defd(&o.HelloTimeout, 5*time.Second)
	defd(&o.HandshakeTimeout, 10*time.Second)
	defd(&o.HeaderTimeout, 30*time.Second)
	defd(&o.PingInterval, 24*time.Second)
	def(&o.PingMax, 3)
	defd(&o.ChannelIdle, 30*24*time.Hour)
	defd(&o.DrainTimeout, 5*time.Second)
	defd(&o.CloseLinger, 3*time.Second)
	defd(&o.TickInterval, time.Second)
	if o.ReleaseQuiet == 0 {
		o.ReleaseQuiet = 2 * time.Second
	}
	if o.MaxConns < 0 {
		return fmt.Errorf("server: max-conns %d < 0", o.MaxConns)
	}
	if o.MaxConnsPerIP < 0 {
		return fmt.Errorf("server: max-conns-per-ip %d < 0", o.MaxConnsPerIP)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

func ceilPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}
