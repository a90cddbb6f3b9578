package server

import (
	"time"

	"github.com/mles/mles/codec"
	"github.com/mles/mles/ring"
)

// The defaults of Options, in one place (as nats-server's const.go keeps
// its own). Options.SetDefaults applies them to zero fields, and the
// command line shows them as its flag defaults.
const (
	DefaultAddr              = ":443"
	DefaultHistory           = ring.DefaultHistory // -l, as mles-rs
	MaxHistory               = 999999              // -l's upper bound, as mles-rs
	DefaultHistoryBytes      = 64 << 20
	DefaultHistoryTotalBytes = 1 << 30
	DefaultMinRing           = ring.DefaultSize // ring slots: max(this, 2 x History)
	DefaultReadBufferCap     = 64 << 10
	DefaultWriteBufferCap    = 4 << 10
	DefaultMaxMessage        = 16 << 20
	// MaxMessageLimit bounds MaxMessage: a frame's offset fits 32 bits.
	MaxMessageLimit          = 1 << 30
	DefaultMaxPending        = 4 << 20
	DefaultSlowGrace         = 10 * time.Second
	DefaultMaxUID            = codec.DefaultMaxUID
	DefaultMaxChannel        = codec.DefaultMaxChannel
	DefaultHandshakesPerLoop = 256 // MaxHandshakes: this many per reactor
	DefaultHelloTimeout      = 5 * time.Second
	DefaultHandshakeTimeout  = 10 * time.Second
	DefaultHeaderTimeout     = 30 * time.Second
	DefaultPingInterval      = 24 * time.Second
	DefaultPingMax           = 3
	DefaultChannelIdle       = 30 * 24 * time.Hour
	DefaultDrainTimeout      = 5 * time.Second
	DefaultCloseLinger       = 3 * time.Second
	DefaultTickInterval      = time.Second
	DefaultReleaseQuiet      = 2 * time.Second
	DefaultPeerRetry         = 100 * time.Millisecond
	DefaultPeerRetryMax      = 10 * time.Second
	DefaultNATSPrefix        = "mles"
)
