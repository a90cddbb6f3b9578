package server

import (
	"errors"
	"net"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mles/mles/server/store"
)

// TestSetDefaults: the zero Options gets every default of const.go, the
// derived ones follow their inputs, and a second SetDefaults changes
// nothing.
func TestSetDefaults(t *testing.T) {
	var o Options
	o.SetDefaults()
	host, _ := os.Hostname()
	want := Options{
		Addr: DefaultAddr, Reactors: runtime.NumCPU(),
		ReadBufferCap: DefaultReadBufferCap, WriteBufferCap: DefaultWriteBufferCap,
		History: DefaultHistory, HistoryBytes: DefaultHistoryBytes, HistoryTotalBytes: DefaultHistoryTotalBytes,
		RingSize:   DefaultMinRing,
		MaxMessage: DefaultMaxMessage, MaxPending: DefaultMaxPending, SlowGrace: DefaultSlowGrace,
		MaxUID: DefaultMaxUID, MaxChannel: DefaultMaxChannel,
		MaxHandshakes: DefaultHandshakesPerLoop * runtime.NumCPU(),
		HelloTimeout:  DefaultHelloTimeout, HandshakeTimeout: DefaultHandshakeTimeout, HeaderTimeout: DefaultHeaderTimeout,
		PingInterval: DefaultPingInterval, PingMax: DefaultPingMax, ChannelIdle: DefaultChannelIdle,
		DrainTimeout: DefaultDrainTimeout, CloseLinger: DefaultCloseLinger,
		TickInterval: DefaultTickInterval, ReleaseQuiet: DefaultReleaseQuiet,
		HistorySync: store.DefaultSync, PeerRetry: DefaultPeerRetry, PeerRetryMax: DefaultPeerRetryMax, ServerID: net.JoinHostPort(host, "443"),
		NATSPrefix: DefaultNATSPrefix, NATSReplicas: 1,
		Logger: o.Logger,
	}
	if o.Logger == nil {
		t.Fatal("no default Logger")
	}
	if !reflect.DeepEqual(o, want) {
		t.Fatalf("SetDefaults on zero Options:\n got %+v\nwant %+v", o, want)
	}
	again := o
	again.SetDefaults()
	if !reflect.DeepEqual(again, o) {
		t.Fatalf("a second SetDefaults changed the options:\n got %+v\nwant %+v", again, o)
	}
	if err := o.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}

	// Derived defaults follow their inputs; set values stay.
	d := Options{Reactors: 3, History: 5000, RingSize: 100, ReleaseQuiet: -1, MaxHandshakes: 7}
	d.SetDefaults()
	if d.RingSize != 16384 { // ceilPow2(2 x 5000)
		t.Errorf("RingSize %d for History 5000, want 16384", d.RingSize)
	}
	if d.MaxHandshakes != 7 || d.ReleaseQuiet != -1 {
		t.Errorf("set values changed: MaxHandshakes %d, ReleaseQuiet %v", d.MaxHandshakes, d.ReleaseQuiet)
	}
	e := Options{Reactors: 3, RingSize: 3000}
	e.SetDefaults()
	if e.MaxHandshakes != 3*DefaultHandshakesPerLoop || e.RingSize != 4096 {
		t.Errorf("MaxHandshakes %d, RingSize %d; want %d and 4096", e.MaxHandshakes, e.RingSize, 3*DefaultHandshakesPerLoop)
	}
}

// TestValidate: an impossible value is refused with an error that names the
// option and its flag; Validate changes nothing.
func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		set  func(*Options)
		flag string // in the error; "" for ErrHistoryRange
	}{
		{"history-big", func(o *Options) { o.History = MaxHistory + 1 }, ""},
		{"history-negative", func(o *Options) { o.History = -1 }, ""},
		{"max-pending", func(o *Options) { o.MaxPending = -1 }, "--max-pending"},
		{"hello-timeout", func(o *Options) { o.HelloTimeout = -time.Second }, "--hello-timeout"},
		{"ring-size", func(o *Options) { o.RingSize = -4 }, "--ring-size"},
		{"history-bytes", func(o *Options) { o.HistoryBytes = -1 }, "--history-bytes"},
		{"max-conns", func(o *Options) { o.MaxConns = -1 }, "--max-conns"},
		{"max-conns-per-ip", func(o *Options) { o.MaxConnsPerIP = -2 }, "--max-conns-per-ip"},
		{"reactors", func(o *Options) { o.Reactors = -1 }, "--reactors"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var o Options
			tc.set(&o)
			o.SetDefaults()
			before := o
			err := o.Validate()
			if err == nil {
				t.Fatalf("Validate accepted %+v", o)
			}
			if tc.flag == "" {
				if !errors.Is(err, ErrHistoryRange) {
					t.Fatalf("err %v, want ErrHistoryRange", err)
				}
			} else if !strings.Contains(err.Error(), tc.flag+")") {
				t.Fatalf("err %q does not name %s", err, tc.flag)
			}
			if !reflect.DeepEqual(o, before) {
				t.Fatal("Validate changed the options")
			}
		})
	}
	if _, err := New(Options{}); !errors.Is(err, ErrNoTLS) {
		t.Fatalf("New without TLS and not plain: %v, want ErrNoTLS", err)
	}
}
