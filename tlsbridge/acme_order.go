package tlsbridge

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/acme"
)

// Challenge types ACME answers, in order of preference.
const (
	chalTLSALPN01 = "tls-alpn-01"
	chalHTTP01    = "http-01"
)

// obtain registers the account if needed, orders one certificate for all
// the domains, stores it in the cache and returns it. It runs on the run
// goroutine only.
func (a *ACME) obtain(ctx context.Context) (*tls.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, acmeAttemptTimeout)
	defer cancel()
	if err := a.register(ctx); err != nil {
		return nil, err
	}
	what := "tlsbridge: ACME order for " + strings.Join(a.domains, ",")
	o, err := a.authorize(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("%s: certificate key: %w", what, err)
	}
	req := &x509.CertificateRequest{DNSNames: a.domains}
	if len(a.domains[0]) <= 64 { // ub-common-name; the CN is optional
		req.Subject = pkix.Name{CommonName: a.domains[0]}
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, req, key)
	if err != nil {
		return nil, fmt.Errorf("%s: CSR: %w", what, err)
	}
	// CreateCertFromOrder, not CreateOrderCert: it polls the order's own
	// URL, where CreateOrderCert needs a Location header in the
	// finalization response, which RFC 8555 does not require (pebble sends
	// none).
	der, _, err := a.client.CreateCertFromOrder(ctx, o, csr, true)
	if err != nil {
		return nil, fmt.Errorf("%s: finalize %s: %w", what, o.URI, err)
	}
	cert, err := checkIssued(der, key, a.domains, time.Now())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := a.storeCert(ctx, cert); err != nil {
		// Served anyway; the next start orders again.
		a.log.Error("ACME certificate not cached", "err", err)
	}
	return cert, nil
}

// checkIssued builds the certificate from the CA's chain and the key of
// the CSR, and checks that it covers every domain and is valid at now.
func checkIssued(der [][]byte, key *ecdsa.PrivateKey, domains []string, now time.Time) (*tls.Certificate, error) {
	if len(der) == 0 {
		return nil, errors.New("the CA returned no certificate")
	}
	leaf, err := x509.ParseCertificate(der[0])
	if err != nil {
		return nil, fmt.Errorf("issued certificate: %w", err)
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("issued certificate is not for the CSR's key")
	}
	for _, d := range domains {
		if err := leaf.VerifyHostname(d); err != nil {
			return nil, fmt.Errorf("issued certificate: %w", err)
		}
	}
	if now.Before(leaf.NotBefore) || !now.Before(leaf.NotAfter) {
		return nil, fmt.Errorf("issued certificate valid only from %v to %v", leaf.NotBefore, leaf.NotAfter)
	}
	return &tls.Certificate{Certificate: der, PrivateKey: key, Leaf: leaf}, nil
}

// register makes sure the account exists at the CA, with the emails as
// contacts and the terms of service accepted; the key comes from the cache.
func (a *ACME) register(ctx context.Context) error {
	if a.registered {
		return nil
	}
	if a.client.Key == nil {
		key, err := a.accountKey(ctx)
		if err != nil {
			return err
		}
		a.client.Key = key
	}
	acct := &acme.Account{}
	for _, e := range a.emails {
		if !strings.HasPrefix(e, "mailto:") {
			e = "mailto:" + e
		}
		acct.Contact = append(acct.Contact, e)
	}
	_, err := a.client.Register(ctx, acct, acme.AcceptTOS)
	if err != nil && !errors.Is(err, acme.ErrAccountAlreadyExists) {
		return fmt.Errorf("tlsbridge: ACME account at %s: %w", a.directory, err)
	}
	a.registered = true
	return nil
}

// authorize creates the order for all the domains and satisfies its
// authorizations, then waits until it is ready to finalize. An
// authorization that fails with one challenge type is tried with the next
// in a new order (the failed one is invalid for good), as autocert does.
func (a *ACME) authorize(ctx context.Context) (*acme.Order, error) {
	failed := make(map[string]map[string]error) // domain -> challenge type -> why it failed
	for {
		o, err := a.client.AuthorizeOrder(ctx, acme.DomainIDs(a.domains...))
		if err != nil {
			return nil, fmt.Errorf("new order: %w", err)
		}
		switch o.Status {
		case acme.StatusReady:
			return o, nil
		case acme.StatusPending:
		default:
			return nil, fmt.Errorf("new order %s has status %q", o.URI, o.Status)
		}
		retry, err := a.satisfy(ctx, o, failed)
		if err != nil {
			return nil, err
		}
		if retry {
			continue
		}
		ready, err := a.client.WaitOrder(ctx, o.URI)
		if err != nil {
			return nil, fmt.Errorf("order %s: %w", o.URI, err)
		}
		return ready, nil
	}
}

// satisfy answers each pending authorization of o with the preferred
// challenge type not yet failed for its domain, accepts them all, then
// waits for each. It returns retry when one failed and a new order should
// try the next type; failed records why.
func (a *ACME) satisfy(ctx context.Context, o *acme.Order, failed map[string]map[string]error) (retry bool, err error) {
	type accepted struct {
		z    *acme.Authorization
		chal *acme.Challenge
	}
	var waits []accepted
	defer func() {
		for _, w := range waits {
			a.unfulfill(w.z.Identifier.Value, w.chal)
		}
	}()
	fail := func(domain, typ string, err error) {
		if failed[domain] == nil {
			failed[domain] = make(map[string]error)
		}
		failed[domain][typ] = err
		retry = true
	}
	for _, u := range o.AuthzURLs {
		z, err := a.client.GetAuthorization(ctx, u)
		if err != nil {
			return false, fmt.Errorf("authorization %s: %w", u, err)
		}
		domain := z.Identifier.Value
		if z.Status == acme.StatusValid {
			continue
		}
		if z.Status != acme.StatusPending {
			return false, fmt.Errorf("authorization %s for %s has status %q", u, domain, z.Status)
		}
		chal := a.pickChallenge(z, failed[domain])
		if chal == nil {
			return false, fmt.Errorf("authorization for %s: no challenge left to try: %v", domain, failed[domain])
		}
		if err := a.fulfill(domain, chal); err != nil {
			return false, fmt.Errorf("authorization for %s: %w", domain, err)
		}
		waits = append(waits, accepted{z, chal})
		if _, err := a.client.Accept(ctx, chal); err != nil {
			if ctx.Err() != nil {
				return false, err
			}
			fail(domain, chal.Type, err)
		}
	}
	for _, w := range waits {
		domain := w.z.Identifier.Value
		if _, ok := failed[domain][w.chal.Type]; ok {
			continue // Accept failed
		}
		if _, err := a.client.WaitAuthorization(ctx, w.z.URI); err != nil {
			var ae *acme.AuthorizationError
			if !errors.As(err, &ae) {
				return false, fmt.Errorf("authorization %s for %s: %w", w.z.URI, domain, err)
			}
			fail(domain, w.chal.Type, err)
		}
	}
	return retry, nil
}

// pickChallenge returns z's challenge of the first type ACME answers that
// has not failed yet: tls-alpn-01, then http-01 once HTTPHandler runs.
func (a *ACME) pickChallenge(z *acme.Authorization, failed map[string]error) *acme.Challenge {
	types := []string{chalTLSALPN01}
	if a.http01.Load() {
		types = append(types, chalHTTP01)
	}
	for _, typ := range types {
		if _, ok := failed[typ]; ok {
			continue
		}
		for _, c := range z.Challenges {
			if c.Type == typ {
				return c
			}
		}
	}
	return nil
}

// fulfill makes GetCertificate or HTTPHandler answer chal for domain.
func (a *ACME) fulfill(domain string, chal *acme.Challenge) error {
	switch chal.Type {
	case chalTLSALPN01:
		cert, err := a.client.TLSALPN01ChallengeCert(chal.Token, domain)
		if err != nil {
			return fmt.Errorf("%s certificate: %w", chal.Type, err)
		}
		a.mu.Lock()
		a.alpn[domain] = &cert
		a.mu.Unlock()
	case chalHTTP01:
		resp, err := a.client.HTTP01ChallengeResponse(chal.Token)
		if err != nil {
			return fmt.Errorf("%s response: %w", chal.Type, err)
		}
		a.mu.Lock()
		a.tokens[chal.Token] = resp
		a.mu.Unlock()
	default:
		return fmt.Errorf("challenge type %q not supported", chal.Type)
	}
	return nil
}

// unfulfill stops answering chal for domain.
func (a *ACME) unfulfill(domain string, chal *acme.Challenge) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch chal.Type {
	case chalTLSALPN01:
		delete(a.alpn, domain)
	case chalHTTP01:
		delete(a.tokens, chal.Token)
	}
}
