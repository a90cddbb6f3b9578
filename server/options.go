package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"runtime"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mles/mles/server/store"
)

// Options configures a Server. The zero value of every field means its
// documented default (const.go): SetDefaults fills them in, Validate then
// rejects impossible values, and New does both, so it sees one consistent
// set.
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

	// HTTP serves the requests on the WebSocket port that are not
	// WebSocket upgrades (SPEC 3: static files, proxy), off the event
	// loops, in a net/http.Server over in-memory connections. Nil answers
	// them 404.
	HTTP http.Handler

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

	// MaxMessage is the largest accepted message in bytes (1009 beyond it),
	// at most MaxMessageLimit.
	// Default 16 MiB.
	MaxMessage int
	// MaxConns bounds concurrent connections; extras are closed at accept.
	// Default 0: unlimited.
	MaxConns int
	// MaxConnsPerIP bounds concurrent connections from one client address
	// (IPv4, or IPv6 /64); extras are closed at accept, before TLS.
	// Default 0: unlimited.
	MaxConnsPerIP int
	// RateLimit is the most new connections one client address (IPv6:
	// /64) may open per minute, refused at accept before TLS (SPEC 3,
	// mles-rs --rate-limit); a burst of RateLimit is allowed. 0: unlimited.
	RateLimit int
	// ProxyProtocol expects a PROXY protocol header (HAProxy's v1 text or
	// v2 binary, as HAProxy's send-proxy and nginx's proxy_protocol send
	// it) first on every connection, and takes the client's address from
	// it for the limits above and the logs. A connection without one is
	// closed. With TrustedProxies set, only those addresses may connect.
	ProxyProtocol bool
	// TrustedProxies are the proxies whose X-Forwarded-For header names
	// the client of a WebSocket upgrade: from them, MaxConnsPerIP and
	// RateLimit apply at the upgrade to the right-most address of the
	// header that is not itself a trusted proxy (to the proxy's own when
	// the header is absent), not at accept. Ordinary HTTP requests through
	// them are not limited. Empty: X-Forwarded-For is ignored.
	TrustedProxies []netip.Prefix
	// MaxPending bounds a member's unsent outbound bytes before it is
	// paused and, past SlowGrace, closed as a slow consumer. Default 4 MiB.
	MaxPending int
	// SlowGrace is how long a member may stay above MaxPending. Default 10 s.
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

	// ReplaceDuplicate closes an existing member with the same (uid,
	// channel, auth) and admits the new one, instead of refusing the new one.
	ReplaceDuplicate bool
	// Key is MLES_KEY; KeySet tells whether it was set at all (an empty
	// MLES_KEY still requires auth).
	Key    string
	KeySet bool

	// HistoryDir keeps the history on disk in this directory (SPEC 1.4,
	// --history-dir), so that a restart keeps it; empty: in memory only.
	HistoryDir string
	// HistorySync is HistoryDir's durability policy (--history-sync):
	// "always" (fsync every batch), a duration (fsync that often; the
	// default "1s") or "none" (the OS writes back).
	HistorySync string

	// Peers are the Mles servers this one links its channels with (SPEC
	// 1.5, --peer): ws:// or wss:// URLs. For every channel with local
	// client members the server keeps one session to each.
	Peers []string
	// ServerID names this server to its peers (--server-id): the uid of
	// its peer sessions, and how a server recognises a session from
	// itself. Default: the host name and the listen port.
	ServerID string
	// PeerTLS is the client TLS configuration for wss:// peers. Default:
	// the system roots (ServerName from the URL).
	PeerTLS *tls.Config
	// PeerRetry is the first wait before a peer session is dialed again
	// after it failed or closed; it doubles up to PeerRetryMax. Default
	// 100 ms and 10 s.
	PeerRetry, PeerRetryMax time.Duration

	// NATS are the URLs of a NATS cluster to join (SPEC 6, --nats): a
	// channel then spans every server with members of it, its history
	// and order are a JetStream stream's. Not with Peers or HistoryDir.
	NATS []string
	// NATSPrefix is the subjects' first token and, upper-cased, the
	// stream's name (--nats-prefix). Default "mles".
	NATSPrefix string
	// NATSReplicas is the stream's number of replicas (--nats-replicas).
	// Default 1.
	NATSReplicas int
	// NATSOptions are further nats.go options (credentials, TLS).
	NATSOptions []nats.Option

	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
}

// ErrNoTLS is New's error for options without a certificate source that
// are not plain. ErrHistoryRange is Validate's for History; its other
// errors name the option and its command-line flag.
var (
	ErrNoTLS        = errors.New("server: no TLS configuration and not plain")
	ErrHistoryRange = errors.New("server: History (-l/--limit) out of range 1..999999")
)

// SetDefaults gives every zero field its default (const.go), and derives
// the defaults that depend on other fields: MaxHandshakes from Reactors,
// RingSize from History. It never fails; Validate then checks the result.
func (o *Options) SetDefaults() {
	set := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	setd := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	set64 := func(v *int64, d int64) {
		if *v == 0 {
			*v = d
		}
	}
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	set(&o.Reactors, runtime.NumCPU())
	set(&o.ReadBufferCap, DefaultReadBufferCap)
	set(&o.WriteBufferCap, DefaultWriteBufferCap)
	set(&o.History, DefaultHistory)
	set64(&o.HistoryBytes, DefaultHistoryBytes)
	set64(&o.HistoryTotalBytes, DefaultHistoryTotalBytes)
	if o.History > 0 && o.RingSize >= 0 {
		o.RingSize = ceilPow2(max(o.RingSize, DefaultMinRing, 2*o.History))
	}
	set(&o.MaxMessage, DefaultMaxMessage)
	set(&o.MaxPending, DefaultMaxPending)
	setd(&o.SlowGrace, DefaultSlowGrace)
	set(&o.MaxUID, DefaultMaxUID)
	set(&o.MaxChannel, DefaultMaxChannel)
	if o.Reactors > 0 {
		set(&o.MaxHandshakes, DefaultHandshakesPerLoop*o.Reactors)
	}
	setd(&o.HelloTimeout, DefaultHelloTimeout)
	setd(&o.HandshakeTimeout, DefaultHandshakeTimeout)
	setd(&o.HeaderTimeout, DefaultHeaderTimeout)
	setd(&o.PingInterval, DefaultPingInterval)
	set(&o.PingMax, DefaultPingMax)
	setd(&o.ChannelIdle, DefaultChannelIdle)
	setd(&o.DrainTimeout, DefaultDrainTimeout)
	setd(&o.CloseLinger, DefaultCloseLinger)
	setd(&o.TickInterval, DefaultTickInterval)
	setd(&o.ReleaseQuiet, DefaultReleaseQuiet)
	if o.HistorySync == "" {
		o.HistorySync = store.DefaultSync
	}
	setd(&o.PeerRetry, DefaultPeerRetry)
	setd(&o.PeerRetryMax, DefaultPeerRetryMax)
	if o.NATSPrefix == "" {
		o.NATSPrefix = DefaultNATSPrefix
	}
	set(&o.NATSReplicas, 1)
	if o.ServerID == "" {
		host, _ := os.Hostname()
		_, port, _ := net.SplitHostPort(o.Addr)
		o.ServerID = net.JoinHostPort(host, port)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Validate checks options that SetDefaults has filled in; it changes
// nothing. An error names the option and its command-line flag.
func (o *Options) Validate() error {
	if o.History < 1 || o.History > MaxHistory {
		return ErrHistoryRange
	}
	positive := []struct {
		name string
		v    int64
	}{
		{"Reactors (--reactors)", int64(o.Reactors)},
		{"ReadBufferCap (--read-buffer-cap)", int64(o.ReadBufferCap)},
		{"WriteBufferCap (--write-buffer-cap)", int64(o.WriteBufferCap)},
		{"HistoryBytes (--history-bytes)", o.HistoryBytes},
		{"HistoryTotalBytes (--history-total-bytes)", o.HistoryTotalBytes},
		{"RingSize (--ring-size)", int64(o.RingSize)},
		{"MaxMessage (--max-message)", int64(o.MaxMessage)},
		{"MaxPending (--max-pending)", int64(o.MaxPending)},
		{"SlowGrace (--slow-grace)", int64(o.SlowGrace)},
		{"MaxUID (--max-uid)", int64(o.MaxUID)},
		{"MaxChannel (--max-channel)", int64(o.MaxChannel)},
		{"MaxHandshakes (--max-handshakes)", int64(o.MaxHandshakes)},
		{"HelloTimeout (--hello-timeout)", int64(o.HelloTimeout)},
		{"HandshakeTimeout (--handshake-timeout)", int64(o.HandshakeTimeout)},
		{"HeaderTimeout (--header-timeout)", int64(o.HeaderTimeout)},
		{"PingInterval (--ping-interval)", int64(o.PingInterval)},
		{"PingMax (--ping-max)", int64(o.PingMax)},
		{"ChannelIdle (--channel-idle)", int64(o.ChannelIdle)},
		{"DrainTimeout (--drain-timeout)", int64(o.DrainTimeout)},
		{"CloseLinger (--close-linger)", int64(o.CloseLinger)},
		{"TickInterval", int64(o.TickInterval)},
	}
	for _, p := range positive {
		if p.v <= 0 {
			return fmt.Errorf("server: %s %d: must be positive", p.name, p.v)
		}
	}
	if o.MaxMessage > MaxMessageLimit {
		return fmt.Errorf("server: MaxMessage (--max-message) %d: at most %d", o.MaxMessage, MaxMessageLimit)
	}
	if o.MaxConns < 0 {
		return fmt.Errorf("server: MaxConns (--max-conns) %d: must be 0 (unlimited) or positive", o.MaxConns)
	}
	if o.RateLimit < 0 {
		return fmt.Errorf("server: RateLimit (--rate-limit) %d: must be 0 (unlimited) or positive", o.RateLimit)
	}
	for _, p := range o.TrustedProxies {
		if !p.IsValid() {
			return fmt.Errorf("server: TrustedProxies (--trusted-proxies) %v: not an address prefix", p)
		}
	}
	if _, err := store.ParseSync(o.HistorySync); o.HistoryDir != "" && err != nil {
		return fmt.Errorf("server: HistorySync (--history-sync): %w", err)
	}
	for _, u := range o.Peers {
		if _, err := parsePeerURL(u); err != nil {
			return fmt.Errorf("server: Peers (--peer) %q: %w", u, err)
		}
	}
	if len(o.NATS) > 0 {
		switch {
		case len(o.Peers) > 0:
			return errors.New("server: NATS (--nats) and Peers (--peer): a server links its channels one way")
		case o.HistoryDir != "":
			return errors.New("server: NATS (--nats) and HistoryDir (--history-dir): on NATS the history is in the JetStream stream")
		case !natsToken.MatchString(o.NATSPrefix):
			return fmt.Errorf("server: NATSPrefix (--nats-prefix) %q: letters, digits, '-' and '_' only", o.NATSPrefix)
		case o.NATSReplicas < 1 || o.NATSReplicas > 5:
			return fmt.Errorf("server: NATSReplicas (--nats-replicas) %d: 1..5", o.NATSReplicas)
		}
	}
	if o.MaxConnsPerIP < 0 {
		return fmt.Errorf("server: MaxConnsPerIP (--max-conns-per-ip) %d: must be 0 (unlimited) or positive", o.MaxConnsPerIP)
	}
	return nil
}

// natsToken is what NATSPrefix may be: one subject token, also a stream
// name.
var natsToken = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func ceilPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}
