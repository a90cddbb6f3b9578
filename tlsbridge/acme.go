package tlsbridge

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"

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
	// CacheDir keeps the account key and certificates across restarts
	// (mles-rs -c); empty keeps them in memory only.
	CacheDir string
	// DirectoryURL is the CA's directory: default Let's Encrypt, or
	// LetsEncryptStaging.
	DirectoryURL string
	// HTTPClient talks to the CA; nil is http.DefaultClient (system roots,
	// or SSL_CERT_FILE).
	HTTPClient *http.Client
}

// ACME obtains and renews the certificate with golang.org/x/crypto's
// autocert: TLS-ALPN-01 on the TLS port (its validation connections ask for
// ALPN "acme-tls/1" and get the challenge certificate in the handshake),
// HTTP-01 through HTTPHandler on a port-80 listener. Issuance happens in
// GetCertificate, so on the handshake goroutine of the first client that
// asks, never on an event loop; renewal runs in the background.
type ACME struct {
	m       *autocert.Manager
	domains []string
}

// NewACME checks cfg and returns its source.
func NewACME(cfg ACMEConfig) (*ACME, error) {
	if len(cfg.Domains) == 0 {
		return nil, errors.New("tlsbridge: ACME needs at least one domain (-d)")
	}
	domains := make([]string, len(cfg.Domains))
	for i, d := range cfg.Domains {
		domains[i] = strings.ToLower(strings.TrimSuffix(d, "."))
	}
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		HostPolicy: autocert.HostWhitelist(domains...),
		Client:     &acme.Client{DirectoryURL: cfg.DirectoryURL, HTTPClient: cfg.HTTPClient},
	}
	if cfg.DirectoryURL == "" {
		m.Client.DirectoryURL = autocert.DefaultACMEDirectory
	}
	if len(cfg.Emails) > 0 {
		m.Email = cfg.Emails[0] // autocert registers one contact
	}
	if cfg.CacheDir != "" {
		m.Cache = autocert.DirCache(cfg.CacheDir)
	}
	return &ACME{m: m, domains: domains}, nil
}

// GetCertificate is the tls.Config callback: the certificate for the
// client's server name (obtained or renewed as needed), or the TLS-ALPN-01
// challenge certificate for a validation connection. A ClientHello without
// a server name is taken as asking for the first domain, so clients that
// dial an IP address still get the site's certificate.
func (a *ACME) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if hello.ServerName == "" {
		hello.ServerName = a.domains[0]
	}
	return a.m.GetCertificate(hello)
}

// TLSConfig is ServerConfig with the ACME certificates and ALPN
// "acme-tls/1" for TLS-ALPN-01.
func (a *ACME) TLSConfig() *tls.Config {
	cfg := ServerConfig(a.GetCertificate)
	cfg.NextProtos = append(cfg.NextProtos, acme.ALPNProto)
	return cfg
}

// HTTPHandler answers HTTP-01 challenges and passes every other request to
// fallback (the redirect to https). The Host's port is dropped before
// autocert checks the name against the domains: a validation on a port
// other than 80 (a test CA, a port forward) names it there.
func (a *ACME) HTTPHandler(fallback http.Handler) http.Handler {
	h := a.m.HTTPHandler(fallback)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if host, _, err := net.SplitHostPort(r.Host); err == nil {
			r = r.Clone(r.Context())
			r.Host = host
		}
		h.ServeHTTP(w, r)
	})
}
