package tlsbridge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync/atomic"
	"time"
)

// DefaultSelfSignedHosts returns the names a SelfSigned certificate covers
// when none are given: a fresh slice each time, so no caller can change
// another's default.
func DefaultSelfSignedHosts() []string { return []string{"localhost", "127.0.0.1", "::1"} }

// SelfSignedValidity is how long a SelfSigned certificate is valid.
const SelfSignedValidity = 365 * 24 * time.Hour

// SelfSigned returns a fresh self-signed ECDSA P-256 certificate for hosts
// (DNS names or IP addresses; DefaultSelfSignedHosts() when empty), valid from
// an hour ago for SelfSignedValidity. It is the last-resort source (SPEC 2):
// ephemeral, for first runs and tests. Leaf is set.
func SelfSigned(hosts []string) (tls.Certificate, error) {
	if len(hosts) == 0 {
		hosts = DefaultSelfSignedHosts()
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tlsbridge: self-signed key: %w", err)
	}
	// RFC 5280 section 4.1.2.2: positive, at most 20 octets.
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tlsbridge: self-signed serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"mles self-signed"}, CommonName: hosts[0]},
		NotBefore:             now.Add(-time.Hour), // tolerate clock skew
		NotAfter:              now.Add(SelfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, // a leaf, not a CA; clients pin it as a root
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tlsbridge: self-signed certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tlsbridge: self-signed certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// FileSource serves a certificate and key loaded from PEM files
// (--tls-cert, --tls-key) and swaps them atomically on Reload, which the
// server calls on SIGHUP. Handshakes in flight keep the certificate they got.
// Safe for concurrent use.
type FileSource struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

// NewFileSource loads certFile and keyFile once and fails if they do not
// form a valid pair.
func NewFileSource(certFile, keyFile string) (*FileSource, error) {
	s := &FileSource{certFile: certFile, keyFile: keyFile}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the files again. On error the current certificate stays in
// use, so a half-written file during a renewal does not take the server
// down.
func (s *FileSource) Reload() error {
	cert, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return fmt.Errorf("tlsbridge: load %s and %s: %w", s.certFile, s.keyFile, err)
	}
	s.cert.Store(&cert)
	return nil
}

// Certificate returns the certificate in use.
func (s *FileSource) Certificate() *tls.Certificate { return s.cert.Load() }

// GetCertificate implements tls.Config.GetCertificate: the same certificate
// for every name.
func (s *FileSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cert := s.cert.Load()
	if cert == nil {
		return nil, errors.New("tlsbridge: no certificate loaded")
	}
	return cert, nil
}

// Static returns a GetCertificate function serving cert for every name (the
// SelfSigned case).
func Static(cert tls.Certificate) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }
}

// ServerConfig returns the server's tls.Config: TLS 1.2 and up (TLS 1.3 is
// preferred by crypto/tls when the client offers it), ALPN "http/1.1" (the
// WebSocket upgrade is HTTP/1.1), certificates from getCert. getCert may
// block (ACME issuance): it runs on the handshake goroutine, never on a loop.
// An ACME TLS-ALPN-01 source must add "acme-tls/1" to NextProtos.
func ServerConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
		GetCertificate: getCert,
	}
}
