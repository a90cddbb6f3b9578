package tlsbridge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSelfSignedVerifies: the certificate verifies, with itself as the only
// root, for each default name.
func TestSelfSignedVerifies(t *testing.T) {
	cert, err := SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: pool}); err == nil {
		t.Error("verified for example.com")
	}
	key, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || key.Curve != elliptic.P256() {
		t.Errorf("key %T", leaf.PublicKey)
	}
	if life := time.Until(leaf.NotAfter); life < 364*24*time.Hour || life > 366*24*time.Hour {
		t.Errorf("valid for %v", life)
	}
	if leaf.IsCA {
		t.Error("leaf marked as CA")
	}
}

// TestSelfSignedHosts: given names replace the defaults.
func TestSelfSignedHosts(t *testing.T) {
	cert, err := SelfSigned([]string{"chat.example", "10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	for name, want := range map[string]bool{"chat.example": true, "10.0.0.1": true, "localhost": false} {
		_, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool})
		if (err == nil) != want {
			t.Errorf("%s: verify error %v, want ok=%v", name, err, want)
		}
	}
}

// writePair writes cert as PEM files into dir and returns their paths.
func writePair(t *testing.T, dir string, cert tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestFileSourceReload: Reload switches the certificate new handshakes get,
// and a broken file keeps the old one.
func TestFileSourceReload(t *testing.T) {
	first, err := SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	second, err := SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, first)
	src, err := NewFileSource(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	s := newLoopServer(t, Config{TLS: ServerConfig(src.GetCertificate), Timeout: 10 * time.Second}, 0)
	served := func() []byte {
		cfg := clientConfig(0)
		cfg.RootCAs.AddCert(first.Leaf)
		cfg.RootCAs.AddCert(second.Leaf)
		cc := dial(t, s, cfg)
		defer cc.Close()
		return cc.ConnectionState().PeerCertificates[0].Raw
	}
	if got := served(); string(got) != string(first.Certificate[0]) {
		t.Fatal("not serving the first certificate")
	}

	writePair(t, dir, second)
	if err := src.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := served(); string(got) != string(second.Certificate[0]) {
		t.Fatal("not serving the second certificate after Reload")
	}

	if err := os.WriteFile(keyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := src.Reload(); err == nil {
		t.Fatal("Reload accepted a broken key")
	}
	if got := served(); string(got) != string(second.Certificate[0]) {
		t.Fatal("a failed Reload changed the certificate")
	}
}

// TestNewFileSourceMissing: a missing file is an error at startup.
func TestNewFileSourceMissing(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewFileSource(filepath.Join(dir, "no.pem"), filepath.Join(dir, "no.key")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v, want a not-exist error", err)
	}
}

// TestServerConfig: TLS 1.2 minimum and ALPN http/1.1; a TLS 1.1 client is
// refused.
func TestServerConfig(t *testing.T) {
	cfg := ServerConfig(Static(testCert()))
	if cfg.MinVersion != tls.VersionTLS12 || len(cfg.NextProtos) != 1 || cfg.NextProtos[0] != "http/1.1" {
		t.Fatalf("config: min %x protos %v", cfg.MinVersion, cfg.NextProtos)
	}
	s := newLoopServer(t, Config{TLS: cfg, Timeout: 10 * time.Second}, 0)
	old := clientConfig(tls.VersionTLS11)
	old.MinVersion = tls.VersionTLS10
	cc, err := tls.Dial("tcp", s.addr(), old)
	if err == nil {
		cc.Close()
		t.Fatal("TLS 1.1 handshake succeeded")
	}
	// Failed, or Closed when the loop reads the client's close (after the
	// alert) before the handshake goroutine has recorded its failure:
	// either way never established.
	if r := s.next(5 * time.Second); r.state != Failed && r.state != Closed {
		t.Fatalf("server: %v, want Failed or Closed", r.state)
	}
}

// TestIsPlainHTTP covers the classification of handshake errors.
func TestIsPlainHTTP(t *testing.T) {
	rhe := func(s string) error {
		var e tls.RecordHeaderError
		copy(e.RecordHeader[:], s)
		return e
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"get", rhe("GET /"), true},                                   // the common case
		{"head", rhe("HEAD "), true},                                  // curl -I
		{"options", rhe("OPTIO"), true},                               // CORS preflight
		{"wrapped", errors.Join(errors.New("x"), rhe("PUT /")), true}, // errors.As sees through wrapping
		{"notHTTP", rhe("\x47\x01\x02\x03\x04"), false},               // random bytes
		{"otherError", ErrHandshakeTimeout, false},                    // not a record header error
		{"nil", nil, false},                                           // no error
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsPlainHTTP(tc.err); got != tc.want {
				t.Fatalf("IsPlainHTTP = %v", got)
			}
		})
	}
}
