package tlsbridge

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/acme/autocert"
)

// acmeAccountKeyName is the cache entry of the account key: autocert's
// name and format (PEM "EC PRIVATE KEY"), so a cache written by an
// autocert-based mles keeps its account.
const acmeAccountKeyName = "acme_account+key"

// certCacheName is the cache entry of the certificate obtained from the CA
// at directory: one per directory, so switching between staging and
// production (-s) never serves the other CA's certificate. The domains are
// not part of the name: after a change of -d the old certificate is still
// served for the names it covers while the new one is ordered.
func certCacheName(directory string) string {
	sum := sha256.Sum256([]byte(directory))
	return "acme_cert+" + hex.EncodeToString(sum[:8])
}

// renewAt returns when cert is due for renewal: when a third of its
// lifetime is left, or the zero time (now) when there is none or it misses
// one of domains.
func renewAt(cert *tls.Certificate, domains []string) time.Time {
	if cert == nil || cert.Leaf == nil {
		return time.Time{}
	}
	for _, d := range domains {
		if cert.Leaf.VerifyHostname(d) != nil {
			return time.Time{}
		}
	}
	l := cert.Leaf
	return l.NotAfter.Add(-l.NotAfter.Sub(l.NotBefore) / 3)
}

// usable reports whether cert may be served for name at now: it covers
// name and is within its validity period.
func usable(cert *tls.Certificate, name string, now time.Time) bool {
	return cert != nil && cert.Leaf != nil && cert.Leaf.VerifyHostname(name) == nil &&
		!now.Before(cert.Leaf.NotBefore) && now.Before(cert.Leaf.NotAfter)
}

// encodeCertPEM is the cache form of cert (autocert's): its ECDSA key as
// PEM "EC PRIVATE KEY", then the chain as "CERTIFICATE" blocks, leaf first.
func encodeCertPEM(cert *tls.Certificate) ([]byte, error) {
	key, ok := cert.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("tlsbridge: certificate key is %T, not ECDSA", cert.PrivateKey)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("tlsbridge: certificate key: %w", err)
	}
	var b bytes.Buffer
	_ = pem.Encode(&b, &pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	for _, c := range cert.Certificate {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c})
	}
	return b.Bytes(), nil
}

// decodeCertPEM parses encodeCertPEM's output: the key must match the
// leaf. Leaf is set.
func decodeCertPEM(data []byte) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(data, data)
	if err != nil {
		return nil, err
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, err
		}
	}
	return &cert, nil
}

// loadCert returns the cached certificate, or nil and nil when there is no
// cache or no entry.
func (a *ACME) loadCert(ctx context.Context) (*tls.Certificate, error) {
	if a.cache == nil {
		return nil, nil
	}
	name := certCacheName(a.directory)
	data, err := a.cache.Get(ctx, name)
	if errors.Is(err, autocert.ErrCacheMiss) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tlsbridge: ACME cache %s: %w", name, err)
	}
	cert, err := decodeCertPEM(data)
	if err != nil {
		return nil, fmt.Errorf("tlsbridge: ACME cache %s: %w", name, err)
	}
	return cert, nil
}

// storeCert writes cert to the cache, if any.
func (a *ACME) storeCert(ctx context.Context, cert *tls.Certificate) error {
	if a.cache == nil {
		return nil
	}
	data, err := encodeCertPEM(cert)
	if err != nil {
		return err
	}
	name := certCacheName(a.directory)
	if err := a.cache.Put(ctx, name, data); err != nil {
		return fmt.Errorf("tlsbridge: ACME cache %s: %w", name, err)
	}
	return nil
}

// accountKey returns the cached account key, or makes an ECDSA P-256 one
// and caches it before it is registered anywhere.
func (a *ACME) accountKey(ctx context.Context) (crypto.Signer, error) {
	if a.cache != nil {
		data, err := a.cache.Get(ctx, acmeAccountKeyName)
		switch {
		case err == nil:
			key, err := parseSigner(data)
			if err != nil {
				return nil, fmt.Errorf("tlsbridge: ACME cache %s: %w", acmeAccountKeyName, err)
			}
			return key, nil
		case !errors.Is(err, autocert.ErrCacheMiss):
			return nil, fmt.Errorf("tlsbridge: ACME cache %s: %w", acmeAccountKeyName, err)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tlsbridge: ACME account key: %w", err)
	}
	if a.cache != nil {
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("tlsbridge: ACME account key: %w", err)
		}
		data := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
		if err := a.cache.Put(ctx, acmeAccountKeyName, data); err != nil {
			return nil, fmt.Errorf("tlsbridge: ACME cache %s: %w", acmeAccountKeyName, err)
		}
	}
	return key, nil
}

// parseSigner reads the first PEM block of data as a private key: SEC 1
// EC, PKCS #8 or PKCS #1 RSA, as autocert accepts.
func parseSigner(data []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, errors.New("no PEM block")
	}
	if k, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, fmt.Errorf("PKCS #8 key of type %T cannot sign", k)
	}
	if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("PEM block %q is no private key", b.Type)
}
