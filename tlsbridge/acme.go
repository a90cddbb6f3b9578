package tlsbridge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// LetsEncryptStaging is the directory -s/--staging selects, as in mles-rs.
const LetsEncryptStaging = "https://acme-staging-v02.api.letsencrypt.org/directory"

// ACMEConfig configures certificates from an ACME CA (SPEC 2, mles-rs -d -e
// -c -s).
type ACMEConfig struct {
	// Domains are the names of the one certificate; a client asking for
	// another name gets none.
	Domains []string
	// Emails are the account's contacts (mles-rs -e, repeatable).
	Emails []string
	// CacheDir keeps the account key and the certificate across restarts
	// (mles-rs -c); empty keeps them in memory only.
	CacheDir string
	// DirectoryURL is the CA's directory: default Let's Encrypt, or
	// LetsEncryptStaging.
	DirectoryURL string
	// HTTPClient talks to the CA; nil is http.DefaultClient (system roots,
	// or SSL_CERT_FILE).
	HTTPClient *http.Client
	// Logger gets issuance, renewal and their failures; nil is
	// slog.Default().
	Logger *slog.Logger
}

// Issuance timing.
const (
	// acmeAttemptTimeout bounds one issuance attempt (account, order,
	// validations, finalization).
	acmeAttemptTimeout = 5 * time.Minute
	// acmeRetryMin is the wait after a first failed attempt; it doubles
	// with each further failure up to acmeRetryMax. Handshakes in between
	// get the last error at once: a CA's failed-validation limits are
	// counted per hour.
	acmeRetryMin = time.Minute
	acmeRetryMax = time.Hour
	// acmeMaxSleep caps one sleep of the renewal loop, which then checks
	// the due time again: a timer does not count time the machine spent
	// suspended.
	acmeMaxSleep = time.Hour
)

// ACME obtains and renews ONE certificate for all of its domains (one
// order whose identifiers are all the domains, as mles-rs's rustls-acme
// does) with golang.org/x/crypto/acme: TLS-ALPN-01 on the TLS port (the
// CA's validation connections ask for ALPN "acme-tls/1" alone and get the
// challenge certificate in GetCertificate), and HTTP-01 through HTTPHandler
// once a port-80 listener asked for it.
//
// The first GetCertificate starts a background goroutine that loads the
// cached certificate or orders one, and renews it when a third of its
// lifetime remains, serving the old one meanwhile. Handshakes that need a
// certificate not yet there wait for that goroutine, each bounded by its
// own handshake context; so issuance runs on neither an event loop nor a
// handshake goroutine. Close stops it.
type ACME struct {
	domains   []string // lower-case, no trailing dot; domains[0] is the default
	emails    []string
	directory string
	client    *acme.Client   // used by the run goroutine only
	cache     autocert.Cache // nil: memory only
	log       *slog.Logger
	http01    atomic.Bool // HTTPHandler was asked for: HTTP-01 may be answered

	ctx    context.Context // ends at Close; parent of every attempt
	cancel context.CancelFunc
	start  sync.Once
	done   chan struct{} // closed when run returns; nil if it never started

	registered bool // the account exists at the CA; run goroutine only

	mu       sync.Mutex
	cert     *tls.Certificate // the certificate (Leaf set); nil before the first
	busy     bool             // run is loading or obtaining a certificate
	lastErr  error            // the last failed attempt; nil after a success
	failures int              // failed attempts in a row
	retryAt  time.Time        // no attempt before this, after a failure
	closed   bool
	changed  chan struct{}               // closed and replaced when cert, busy, lastErr or closed change
	alpn     map[string]*tls.Certificate // TLS-ALPN-01 challenge certificates by domain
	tokens   map[string]string           // HTTP-01 key authorizations by token
}

// NewACME checks cfg and returns its source. It does not talk to the CA:
// that starts with the first GetCertificate.
func NewACME(cfg ACMEConfig) (*ACME, error) {
	if len(cfg.Domains) == 0 {
		return nil, errors.New("tlsbridge: ACME needs at least one domain (-d)")
	}
	var domains []string
	for _, d := range cfg.Domains {
		n := normalizeHost(d)
		if n == "" {
			return nil, fmt.Errorf("tlsbridge: ACME domain %q is empty", d)
		}
		if !slices.Contains(domains, n) {
			domains = append(domains, n)
		}
	}
	dir := cfg.DirectoryURL
	if dir == "" {
		dir = autocert.DefaultACMEDirectory
	}
	a := &ACME{
		domains:   domains,
		emails:    cfg.Emails,
		directory: dir,
		client:    &acme.Client{DirectoryURL: dir, HTTPClient: cfg.HTTPClient},
		log:       cfg.Logger,
		busy:      true, // until run has looked at the cache
		changed:   make(chan struct{}),
		alpn:      make(map[string]*tls.Certificate),
		tokens:    make(map[string]string),
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if cfg.CacheDir != "" {
		a.cache = autocert.DirCache(cfg.CacheDir)
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	return a, nil
}

// normalizeHost lower-cases a host name and drops a trailing dot.
func normalizeHost(h string) string { return strings.ToLower(strings.TrimSuffix(h, ".")) }

// GetCertificate is the tls.Config callback: the certificate for the
// client's server name, or the TLS-ALPN-01 challenge certificate for a
// validation connection (ALPN exactly "acme-tls/1"). A ClientHello without
// a server name is taken as asking for the first domain, so clients that
// dial an IP address still get the site's certificate; a name outside the
// domains gets an error. While the certificate is being obtained it waits,
// until the handshake's context ends.
func (a *ACME) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := normalizeHost(hello.ServerName)
	if name == "" {
		name = a.domains[0]
	}
	if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acme.ALPNProto {
		a.mu.Lock()
		cert := a.alpn[name]
		a.mu.Unlock()
		if cert == nil {
			return nil, fmt.Errorf("tlsbridge: no TLS-ALPN-01 challenge pending for %q", name)
		}
		return cert, nil
	}
	if !slices.Contains(a.domains, name) {
		return nil, fmt.Errorf("tlsbridge: ACME: %q is not one of the domains (-d)", name)
	}
	a.startOnce()
	ctx := hello.Context()
	if ctx == nil { // a ClientHelloInfo not made by crypto/tls
		ctx = context.Background()
	}
	for {
		a.mu.Lock()
		cert, busy, lastErr, closed, changed := a.cert, a.busy, a.lastErr, a.closed, a.changed
		a.mu.Unlock()
		switch {
		case usable(cert, name, time.Now()):
			return cert, nil
		case closed:
			return nil, fmt.Errorf("tlsbridge: no ACME certificate for %s: closed", name)
		case !busy && lastErr != nil:
			return nil, fmt.Errorf("tlsbridge: no ACME certificate for %s: %w", name, lastErr)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("tlsbridge: ACME certificate for %s still being obtained: %w", name, context.Cause(ctx))
		}
	}
}

// TLSConfig is ServerConfig with the ACME certificate and ALPN
// "acme-tls/1" for TLS-ALPN-01.
func (a *ACME) TLSConfig() *tls.Config {
	cfg := ServerConfig(a.GetCertificate)
	cfg.NextProtos = append(cfg.NextProtos, acme.ALPNProto)
	return cfg
}

// acmeChallengePath is where HTTP-01 looks for a token (RFC 8555 8.3).
const acmeChallengePath = "/.well-known/acme-challenge/"

// HTTPHandler answers HTTP-01 challenges and passes every other request to
// fallback (the redirect to https; nil answers 404). Calling it enables
// HTTP-01 as the second choice after TLS-ALPN-01. The Host's port is
// dropped before it is checked against the domains: a validation on a
// port other than 80 (a test CA, a port forward) names it there.
func (a *ACME) HTTPHandler(fallback http.Handler) http.Handler {
	if fallback == nil {
		fallback = http.NotFoundHandler()
	}
	a.http01.Store(true)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.URL.Path, acmeChallengePath)
		if !ok {
			fallback.ServeHTTP(w, r)
			return
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if !slices.Contains(a.domains, normalizeHost(host)) {
			http.Error(w, "tlsbridge: host not among the ACME domains", http.StatusForbidden)
			return
		}
		a.mu.Lock()
		resp, ok := a.tokens[token]
		a.mu.Unlock()
		if !ok {
			http.Error(w, "tlsbridge: no such ACME challenge", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, resp)
	})
}

// Close stops the background goroutine, abandoning an attempt in flight,
// and waits for it. Handshakes waiting for a certificate, and later ones
// that need one, get an error; a certificate already obtained is still
// served.
func (a *ACME) Close() error {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		a.signalLocked()
	}
	a.mu.Unlock()
	a.start.Do(func() {}) // no start after this; a.done is final
	a.cancel()
	if a.done != nil {
		<-a.done
	}
	return nil
}

// startOnce starts the run goroutine at the first call, unless closed.
func (a *ACME) startOnce() {
	a.start.Do(func() {
		a.mu.Lock()
		closed := a.closed
		a.mu.Unlock()
		if closed {
			return
		}
		a.done = make(chan struct{})
		go a.run()
	})
}

// signalLocked wakes every handshake waiting in GetCertificate. a.mu is
// held.
func (a *ACME) signalLocked() {
	close(a.changed)
	a.changed = make(chan struct{})
}

// run loads the cached certificate, then obtains or renews it whenever it
// is due (missing, not covering every domain, expired, or a third of its
// lifetime left), until Close.
func (a *ACME) run() {
	defer close(a.done)
	if cert, err := a.loadCert(a.ctx); err != nil {
		a.log.Warn("ACME cached certificate unusable; ordering a new one", "err", err)
	} else if cert != nil {
		a.log.Info("ACME certificate from the cache", "domains", strings.Join(a.domains, ","),
			"serial", cert.Leaf.SerialNumber.String(), "not_after", cert.Leaf.NotAfter)
		a.mu.Lock()
		a.cert = cert
		a.signalLocked()
		a.mu.Unlock()
	}
	for {
		now := time.Now()
		a.mu.Lock()
		next := renewAt(a.cert, a.domains)
		if next.Before(a.retryAt) {
			next = a.retryAt
		}
		if next.After(now) {
			if a.busy {
				a.busy = false
				a.signalLocked()
			}
			a.mu.Unlock()
			t := time.NewTimer(min(next.Sub(now), acmeMaxSleep))
			select {
			case <-t.C:
				continue
			case <-a.ctx.Done():
				t.Stop()
				return
			}
		}
		a.busy = true
		renewing := a.cert != nil
		a.mu.Unlock()

		if a.ctx.Err() != nil {
			return
		}
		cert, err := a.obtain(a.ctx)
		if a.ctx.Err() != nil {
			return // Close abandoned the attempt
		}
		a.mu.Lock()
		if err != nil {
			a.failures++
			a.lastErr = err
			a.retryAt = time.Now().Add(min(acmeRetryMin<<min(a.failures-1, 10), acmeRetryMax))
			a.log.Error("ACME certificate not obtained", "err", err, "renewal", renewing, "retry_at", a.retryAt)
		} else {
			a.cert, a.lastErr, a.failures, a.retryAt = cert, nil, 0, time.Time{}
			a.log.Info("ACME certificate obtained", "domains", strings.Join(a.domains, ","),
				"serial", cert.Leaf.SerialNumber.String(), "not_after", cert.Leaf.NotAfter, "renewal", renewing)
		}
		a.signalLocked()
		a.mu.Unlock()
	}
}
