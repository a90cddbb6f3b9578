package tlsbridge

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mles/mles/internal/poll"
)

// quiet discards the log of ACME sources under test.
var quiet = slog.New(slog.DiscardHandler)

// TestACMECacheRoundTrip: the account key and the certificate survive a
// restart through CacheDir, under their stable names; a restart serves
// the cached certificate (for its names, case-folded, and for a hello
// without a server name) without talking to the CA, whose address here
// resolves nowhere; another CA's directory does not see it; a damaged
// entry is an error, not a certificate.
func TestACMECacheRoundTrip(t *testing.T) {
	dir := t.TempDir()
	const ca = "https://ca.invalid/dir"
	cfg := ACMEConfig{Domains: []string{"a.test", "B.test."}, CacheDir: dir, DirectoryURL: ca, Logger: quiet}
	cert, err := SelfSigned([]string{"a.test", "b.test"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := NewACME(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	ctx := t.Context()
	k1, err := first.accountKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.storeCert(ctx, &cert); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{acmeAccountKeyName, certCacheName(ca)} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Fatalf("cache entry: %v", err)
		}
	}

	again, err := NewACME(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	k2, err := again.accountKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Public().(*ecdsa.PublicKey).Equal(k2.Public()) {
		t.Fatal("a restart made a new account key")
	}
	for _, name := range []string{"a.test", "B.TEST.", ""} {
		got, err := again.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
		if err != nil {
			t.Fatalf("%q after a restart: %v", name, err)
		}
		if !bytes.Equal(got.Certificate[0], cert.Certificate[0]) {
			t.Fatalf("%q after a restart: not the cached certificate", name)
		}
		if _, ok := got.PrivateKey.(*ecdsa.PrivateKey); !ok || !got.Leaf.PublicKey.(*ecdsa.PublicKey).Equal(got.PrivateKey.(*ecdsa.PrivateKey).Public()) {
			t.Fatalf("%q after a restart: key %T does not match", name, got.PrivateKey)
		}
	}
	if _, err := again.GetCertificate(&tls.ClientHelloInfo{ServerName: "c.test"}); err == nil {
		t.Fatal("a name outside the domains got a certificate")
	}

	other, err := NewACME(ACMEConfig{Domains: cfg.Domains, CacheDir: dir, DirectoryURL: "https://other.invalid/dir", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if got, err := other.loadCert(ctx); got != nil || err != nil {
		t.Fatalf("another CA's directory loaded a certificate (%t), err %v; want nothing", got != nil, err)
	}
	if err := os.WriteFile(filepath.Join(dir, certCacheName(ca)), []byte("damaged"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := again.loadCert(ctx); got != nil || err == nil {
		t.Fatalf("damaged cache entry loaded a certificate (%t), err %v; want an error", got != nil, err)
	}
}

// TestACMERenewAt: renewal is due when a third of the lifetime is left,
// at once when the certificate misses a domain (one added to -d) or there
// is none; a certificate is served only for its names within its validity.
func TestACMERenewAt(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cert := &tls.Certificate{Leaf: &x509.Certificate{
		NotBefore: t0, NotAfter: t0.Add(90 * 24 * time.Hour), DNSNames: []string{"a.test", "b.test"},
	}}
	if got, want := renewAt(cert, []string{"a.test", "b.test"}), t0.Add(60*24*time.Hour); !got.Equal(want) {
		t.Errorf("renewAt = %v, want %v", got, want)
	}
	if got := renewAt(cert, []string{"a.test"}); !got.Equal(t0.Add(60 * 24 * time.Hour)) {
		t.Errorf("with a domain dropped from -d: renewAt = %v, want the same", got)
	}
	if got := renewAt(cert, []string{"a.test", "b.test", "c.test"}); !got.IsZero() {
		t.Errorf("with a domain added to -d: renewAt = %v, want now (zero)", got)
	}
	if got := renewAt(nil, []string{"a.test"}); !got.IsZero() {
		t.Errorf("without a certificate: renewAt = %v, want now (zero)", got)
	}
	for _, c := range []struct {
		name string
		at   time.Time
		want bool
	}{
		{"a.test", t0, true},
		{"b.test", t0.Add(89 * 24 * time.Hour), true},
		{"a.test", t0.Add(-time.Second), false},
		{"a.test", t0.Add(90 * 24 * time.Hour), false},
		{"c.test", t0.Add(time.Hour), false},
	} {
		if got := usable(cert, c.name, c.at); got != c.want {
			t.Errorf("usable(%s at %v) = %v, want %v", c.name, c.at, got, c.want)
		}
	}
}

// acmeHandshake runs a server handshake with cfg against a client asking
// for name, bounded by timeout, and returns the server's error.
func acmeHandshake(cfg *tls.Config, name string, timeout time.Duration) error {
	sc, cc := net.Pipe()
	defer sc.Close()
	go func() {
		_ = tls.Client(cc, &tls.Config{ServerName: name, InsecureSkipVerify: true}).Handshake()
		cc.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return tls.Server(sc, cfg).HandshakeContext(ctx)
}

// TestACMEOneAttempt: with a CA that refuses everything at once (each
// attempt then costs exactly one request, for the directory), concurrent
// handshakes share one attempt and get its error, and a later handshake
// gets the same error without a new attempt until the retry time.
func TestACMEOneAttempt(t *testing.T) {
	var hits atomic.Int32
	ca := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "refused", http.StatusBadRequest)
	}))
	defer ca.Close()
	a, err := NewACME(ACMEConfig{Domains: []string{"a.test", "b.test"}, DirectoryURL: ca.URL + "/dir", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	names := []string{"a.test", "b.test", "a.test", "b.test"}
	errs := make(chan error, len(names))
	for _, name := range names {
		go func() { errs <- acmeHandshake(a.TLSConfig(), name, time.Minute) }()
	}
	for range names {
		if err := <-errs; err == nil || !strings.Contains(err.Error(), "tlsbridge: ACME account at "+ca.URL) {
			t.Fatalf("handshake: %v, want the failed attempt's error", err)
		}
	}
	if err := acmeHandshake(a.TLSConfig(), "a.test", time.Minute); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("handshake after the failure: %v, want the failed attempt's error", err)
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("the CA saw %d requests; want one attempt for all handshakes, none before the retry time", n)
	}
}

// TestACMEWaitBoundedByHandshake: with a CA that never answers,
// concurrent handshakes wait for the issuance and each gives up when its
// own context ends, while the issuance stays in flight; Close abandons it
// and returns, and a handshake after Close fails at once.
func TestACMEWaitBoundedByHandshake(t *testing.T) {
	var hits atomic.Int32
	ca := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		<-r.Context().Done() // until the client gives up
	}))
	defer ca.Close()
	a, err := NewACME(ACMEConfig{Domains: []string{"a.test", "b.test"}, DirectoryURL: ca.URL + "/dir", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	handshake := func(name string, timeout time.Duration) error { return acmeHandshake(a.TLSConfig(), name, timeout) }
	names := []string{"a.test", "b.test", "a.test", "b.test"}
	errs := make(chan error, len(names))
	for _, name := range names {
		go func() { errs <- handshake(name, 500*time.Millisecond) }()
	}
	for range names {
		select {
		case err := <-errs:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("handshake: %v, want its context's deadline", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a handshake waited for the issuance past its context")
		}
	}
	// The handshakes gave up, not the issuance: it is still at the CA.
	if err := poll.Until(t.Context(), 10*time.Second, 10*time.Millisecond, func() error {
		if hits.Load() == 0 {
			return errors.New("the CA saw no request")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	closed := make(chan struct{})
	go func() { a.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not abandon the issuance in flight")
	}
	done := make(chan error, 1)
	go func() { done <- handshake("a.test", time.Minute) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("handshake after Close succeeded without a certificate")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a handshake after Close waited")
	}
}
