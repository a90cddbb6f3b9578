package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mles/mles/internal/mlestest"
	"github.com/mles/mles/internal/poll"
)

// acmeDomain is the test certificate's name; pebble-challtestsrv answers
// every DNS query with 127.0.0.1, so pebble validates against our server.
const acmeDomain = "chat.mles.test"

// pebbleCA is a real ACME CA on loopback: letsencrypt/pebble and its
// challenge test server as DNS, both built from the module (go.mod tools).
type pebbleCA struct {
	dir  string // the ACME directory URL
	mgmt string // the management API, for the issuing root
	env  []string
	log  *mlestest.LockedBuffer // pebble's output: what it validated, how
}

// startPebble starts pebble validating TLS-ALPN-01 on tlsPort and HTTP-01
// on httpPort of 127.0.0.1, issuing certificates valid for validity (0:
// pebble's default, 90 days).
func startPebble(t *testing.T, work string, tlsPort, httpPort int, validity time.Duration) *pebbleCA {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/letsencrypt/pebble/v2").Output()
	if err != nil {
		t.Fatalf("go list pebble: %v", err)
	}
	src := strings.TrimSpace(string(out))
	pebble := mlestest.BuildBin(t, work, "pebble", "github.com/letsencrypt/pebble/v2/cmd/pebble")
	chall := mlestest.BuildBin(t, work, "pebble-challtestsrv", "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv")

	dnsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(mlestest.FreePort(t)))
	challMgmt := net.JoinHostPort("127.0.0.1", strconv.Itoa(mlestest.FreePort(t)))
	mlestest.StartProc(t, chall, challMgmt, nil, nil,
		"-dnsserver", dnsAddr, "-management", challMgmt, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "")

	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(mlestest.FreePort(t)))
	mgmt := net.JoinHostPort("127.0.0.1", strconv.Itoa(mlestest.FreePort(t)))
	cfg := map[string]map[string]any{"pebble": {
		"listenAddress":                  listen,
		"managementListenAddress":        mgmt,
		"certificate":                    filepath.Join(src, "test/certs/localhost/cert.pem"),
		"privateKey":                     filepath.Join(src, "test/certs/localhost/key.pem"),
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"keyAlgorithm":                   "ecdsa",
	}}
	if validity > 0 {
		cfg["pebble"]["profiles"] = map[string]any{"default": map[string]any{"validityPeriod": int(validity / time.Second)}}
	}
	b, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(work, "pebble.json")
	if err := os.WriteFile(cfgFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// No random sleeps before validation and no random nonce rejection:
	// the test needs the CA's behaviour, not its chaos.
	log := &mlestest.LockedBuffer{}
	mlestest.StartProcEnv(t, []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0"}, pebble, listen, log, nil,
		"-config", cfgFile, "-dnsserver", dnsAddr)
	return &pebbleCA{
		log:  log,
		dir:  "https://" + listen + "/dir",
		mgmt: "https://" + mgmt,
		env:  []string{"SSL_CERT_FILE=" + filepath.Join(src, "test/certs/pebble.minica.pem")},
	}
}

// roots returns a pool with pebble's issuing root (it makes a new one at
// every start), fetched from its management API.
func (p *pebbleCA) roots(t *testing.T) *x509.CertPool {
	t.Helper()
	src := strings.TrimPrefix(p.env[0], "SSL_CERT_FILE=")
	minica, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	mgmtRoots := x509.NewCertPool()
	mgmtRoots.AppendCertsFromPEM(minica)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: mgmtRoots}}}
	resp, err := client.Get(p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	pem, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("pebble root: %q", pem)
	}
	return pool
}

// count returns how often pebble has logged s ("Added order ", "Issued certificate serial ").
func (p *pebbleCA) count(s string) int { return strings.Count(p.log.String(), s) }

// dialLeaf returns the certificate the server at addr shows a client with cfg.
func dialLeaf(addr string, cfg *tls.Config) (*x509.Certificate, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 60 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, fmt.Errorf("TLS as %q: %w", cfg.ServerName, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// peerLeaf is dialLeaf that fails the test.
func peerLeaf(t *testing.T, addr string, cfg *tls.Config) *x509.Certificate {
	t.Helper()
	c, err := dialLeaf(addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// covers fails the test unless c's DNS names are exactly names.
func covers(t *testing.T, c *x509.Certificate, names ...string) {
	t.Helper()
	got := slices.Sorted(slices.Values(c.DNSNames))
	if !slices.Equal(got, slices.Sorted(slices.Values(names))) {
		t.Fatalf("certificate %s names %v, want %v", c.SerialNumber, c.DNSNames, names)
	}
}

// TestACME: with mles-rs's -d -e -c and --acme-directory at a local pebble,
// the first client's handshake obtains a certificate through TLS-ALPN-01 on
// the TLS port; a client that trusts only pebble's root then joins over
// wss and exchanges messages; after a restart the certificate comes from
// the -c cache (the same serial: no new order).
func TestACME(t *testing.T) {
	work := t.TempDir()
	port, redirPort := mlestest.FreePort(t), mlestest.FreePort(t)
	ca := startPebble(t, work, port, redirPort, 0)
	cache := filepath.Join(work, "cache")
	mles := mlestest.BuildBin(t, work, "mles", "github.com/mles/mles/cmd/mles")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := []string{"--addr", "127.0.0.1", "-p", strconv.Itoa(port), "-d", acmeDomain, "-e", "admin@mles.test",
		"-c", cache, "--acme-directory", ca.dir, "--handshake-timeout", "60s", "--log-level", "info"}
	srv := mlestest.StartProcEnv(t, ca.env, mles, addr, nil, nil, args...)

	cfg := &tls.Config{RootCAs: ca.roots(t), ServerName: acmeDomain}
	serial := func() string { t.Helper(); return peerLeaf(t, addr, cfg).SerialNumber.String() }
	start := time.Now()
	first := serial()
	t.Logf("certificate %s obtained in %v", first, time.Since(start))
	if d, err := joinRoundTripTLS(addr, "acme", cfg); err != nil {
		t.Fatalf("join over wss with the ACME certificate: %v", err)
	} else {
		t.Logf("join round trip %v", d)
	}
	// pebble really validated (no "always valid" mode), and without -r
	// TLS-ALPN-01 on the TLS port is the one challenge mles can answer.
	if out := ca.log.String(); !strings.Contains(out, "set VALID by completed challenge") || strings.Contains(out, "Skipping real validation") {
		t.Fatalf("pebble did not validate TLS-ALPN-01:\n%s", mlestest.Tail(out, 3000))
	}
	entries, _ := os.ReadDir(cache)
	if len(entries) < 2 { // the account key and the certificate
		t.Fatalf("cache holds %d entries", len(entries))
	}

	_ = srv.Cmd.Process.Kill()
	<-srv.Done
	mlestest.StartProcEnv(t, ca.env, mles, addr, nil, nil, args...)
	if again := serial(); again != first {
		t.Fatalf("after a restart: certificate %s, want the cached %s", again, first)
	}
	if _, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: cfg.RootCAs, ServerName: "other.mles.test"}); err == nil {
		t.Fatal("a name outside -d got a certificate")
	}
}

// TestACMEHTTP01: pebble validates TLS-ALPN-01 on a port where nothing
// listens, so that challenge fails and the certificate can only come
// through HTTP-01, answered by the -r listener on pebble's HTTP port
// (which still redirects every other request to https).
func TestACMEHTTP01(t *testing.T) {
	work := t.TempDir()
	port, redirPort, nowhere := mlestest.FreePort(t), mlestest.FreePort(t), mlestest.FreePort(t)
	ca := startPebble(t, work, nowhere, redirPort, 0)
	mles := mlestest.BuildBin(t, work, "mles", "github.com/mles/mles/cmd/mles")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	mlestest.StartProcEnv(t, ca.env, mles, addr, nil, nil, "--addr", "127.0.0.1", "-p", strconv.Itoa(port),
		"-d", acmeDomain, "--acme-directory", ca.dir, "--handshake-timeout", "60s",
		"-r", "--redirect-port", strconv.Itoa(redirPort))

	cfg := &tls.Config{RootCAs: ca.roots(t), ServerName: acmeDomain}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 60 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("TLS with pebble's root: %v", err)
	}
	conn.Close()
	out := ca.log.String()
	if !strings.Contains(out, "set INVALID by completed challenge") || !strings.Contains(out, "set VALID by completed challenge") {
		t.Fatalf("want a failed TLS-ALPN-01 authorization, then a valid HTTP-01 one:\n%s", mlestest.Tail(out, 3000))
	}
	if d, err := joinRoundTripTLS(addr, "http01", cfg); err != nil {
		t.Fatalf("join over wss: %v", err)
	} else {
		t.Logf("join round trip %v", d)
	}
	noFollow := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get("http://127.0.0.1:" + strconv.Itoa(redirPort) + "/x?y=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 301 || resp.Header.Get("Location") != "https://127.0.0.1:"+strconv.Itoa(port)+"/x?y=1" {
		t.Fatalf("redirect beside HTTP-01: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestACMEOneCertificate: with two -d, mles orders ONE certificate for
// both names, as mles-rs (rustls-acme) does: clients asking for either
// name at once (and one without a server name) wait for the same
// issuance and get the same certificate, whose names are both domains;
// pebble saw one order and issued one certificate; a restart with the
// same -c serves it from the cache without a new order.
func TestACMEOneCertificate(t *testing.T) {
	work := t.TempDir()
	port := mlestest.FreePort(t)
	ca := startPebble(t, work, port, mlestest.FreePort(t), 0)
	mles := mlestest.BuildBin(t, work, "mles", "github.com/mles/mles/cmd/mles")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	const a, b = "a.mles.test", "b.mles.test"
	args := []string{"--addr", "127.0.0.1", "-p", strconv.Itoa(port), "-d", a, "-d", b, "-e", "admin@mles.test",
		"-c", filepath.Join(work, "cache"), "--acme-directory", ca.dir, "--handshake-timeout", "60s", "--log-level", "info"}
	srv := mlestest.StartProcEnv(t, ca.env, mles, addr, nil, nil, args...)
	roots := ca.roots(t)
	// "B.MLES.TEST" checks that the server name is case-folded; "" is a
	// client dialing the IP address, which gets the first domain's.
	configs := []*tls.Config{
		{RootCAs: roots, ServerName: a},
		{RootCAs: roots, ServerName: "B.MLES.TEST"},
		{InsecureSkipVerify: true},
	}
	all := func() []*x509.Certificate {
		t.Helper()
		leaves := make([]*x509.Certificate, len(configs))
		errs := make([]error, len(configs))
		var wg sync.WaitGroup
		for i, cfg := range configs {
			wg.Go(func() { leaves[i], errs[i] = dialLeaf(addr, cfg) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		return leaves
	}
	first := all()
	for i, c := range first {
		if c.SerialNumber.Cmp(first[0].SerialNumber) != 0 {
			t.Fatalf("client %d (%q) got certificate %s, client 0 (%q) got %s: not one certificate",
				i, configs[i].ServerName, c.SerialNumber, configs[0].ServerName, first[0].SerialNumber)
		}
	}
	covers(t, first[0], a, b)
	if o, c := ca.count("Added order "), ca.count("Issued certificate serial "); o != 1 || c != 1 {
		t.Fatalf("pebble saw %d orders and issued %d certificates, want 1 and 1:\n%s", o, c, mlestest.Tail(ca.log.String(), 3000))
	}

	_ = srv.Cmd.Process.Kill()
	<-srv.Done
	mlestest.StartProcEnv(t, ca.env, mles, addr, nil, nil, args...)
	for i, c := range all() {
		if c.SerialNumber.Cmp(first[0].SerialNumber) != 0 {
			t.Fatalf("after a restart client %d got certificate %s, want the cached %s", i, c.SerialNumber, first[0].SerialNumber)
		}
	}
	if o := ca.count("Added order "); o != 1 {
		t.Fatalf("after a restart with the same -c pebble saw %d orders, want still 1", o)
	}
}

// TestACMERenewal: pebble issues certificates valid for 30 s, so mles
// renews in the background once 10 s are left; until then every client
// gets the old certificate, and the renewal is one new certificate for
// both names, issued before the old one expired.
func TestACMERenewal(t *testing.T) {
	const validity = 30 * time.Second
	work := t.TempDir()
	port := mlestest.FreePort(t)
	ca := startPebble(t, work, port, mlestest.FreePort(t), validity)
	mles := mlestest.BuildBin(t, work, "mles", "github.com/mles/mles/cmd/mles")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	const a, b = "a.mles.test", "b.mles.test"
	mlestest.StartProcEnv(t, ca.env, mles, addr, nil, nil, "--addr", "127.0.0.1", "-p", strconv.Itoa(port),
		"-d", a, "-d", b, "--acme-directory", ca.dir, "--handshake-timeout", "60s", "--log-level", "info")
	roots := ca.roots(t)
	cfgA, cfgB := &tls.Config{RootCAs: roots, ServerName: a}, &tls.Config{RootCAs: roots, ServerName: b}
	old := peerLeaf(t, addr, cfgA)
	var renewed *x509.Certificate
	err := poll.Until(t.Context(), 3*validity, 200*time.Millisecond, func() error {
		c := peerLeaf(t, addr, cfgA) // fails the test if no certificate is served meanwhile
		if c.SerialNumber.Cmp(old.SerialNumber) == 0 {
			return errors.New("still the first certificate")
		}
		renewed = c
		return nil
	})
	if err != nil {
		t.Fatalf("no renewal of %s (valid %v to %v; pebble was asked for %v): %v", old.SerialNumber, old.NotBefore, old.NotAfter, validity, err)
	}
	t.Logf("certificate %s (%v to %v) renewed by %s (from %v)", old.SerialNumber, old.NotBefore, old.NotAfter, renewed.SerialNumber, renewed.NotBefore)
	covers(t, renewed, a, b)
	// Certificate times have whole seconds: allow one early.
	if due := old.NotAfter.Add(-old.NotAfter.Sub(old.NotBefore) / 3); renewed.NotBefore.Before(due.Add(-time.Second)) || !renewed.NotBefore.Before(old.NotAfter) {
		t.Fatalf("renewed at %v, want between the renewal time %v (a third of the lifetime left) and the old certificate's expiry %v",
			renewed.NotBefore, due, old.NotAfter)
	}
	if c := peerLeaf(t, addr, cfgB); c.SerialNumber.Cmp(renewed.SerialNumber) != 0 {
		t.Fatalf("%s got certificate %s after the renewal, %s got %s", b, c.SerialNumber, a, renewed.SerialNumber)
	}
	if o, c := ca.count("Added order "), ca.count("Issued certificate serial "); o != 2 || c != 2 {
		t.Fatalf("pebble saw %d orders and issued %d certificates, want 2 and 2", o, c)
	}
}

// slowProxy forwards TCP connections from a loopback port to target,
// holding every chunk for delay (read at each chunk) in each direction: a
// slow CA.
func slowProxy(t *testing.T, target string, delay *atomic.Int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	pipe := func(dst, src net.Conn) {
		defer dst.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				time.Sleep(time.Duration(delay.Load())) // the slowness under test, not a wait for a condition
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
	return ln.Addr().String()
}

// TestACMEIssuanceInFlight: while a certificate is being issued by a slow
// CA (in the background, started by a handshake), members on both
// reactors keep exchanging messages at loopback speed. A first run gets a
// certificate for one name; the restart adds a second -d, so the cached
// certificate still serves the members while one for both names is
// ordered, and a client asking for the new name waits for it.
func TestACMEIssuanceInFlight(t *testing.T) {
	work := t.TempDir()
	port := mlestest.FreePort(t)
	ca := startPebble(t, work, port, mlestest.FreePort(t), 0)
	var delay atomic.Int64
	slow := slowProxy(t, strings.TrimSuffix(strings.TrimPrefix(ca.dir, "https://"), "/dir"), &delay)
	mles := mlestest.BuildBin(t, work, "mles", "github.com/mles/mles/cmd/mles")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	const other = "late.mles.test"
	args := []string{"--addr", "127.0.0.1", "-p", strconv.Itoa(port), "-c", filepath.Join(work, "cache"),
		"--acme-directory", "https://" + slow + "/dir", "--handshake-timeout", "2m", "--reactors", "2", "-d", acmeDomain}
	srv := mlestest.StartProcEnv(t, ca.env, mles, addr, nil, nil, args...)
	roots := ca.roots(t)
	cfg := &tls.Config{RootCAs: roots, ServerName: acmeDomain}
	first := peerLeaf(t, addr, cfg)
	_ = srv.Cmd.Process.Kill()
	<-srv.Done
	delay.Store(int64(150 * time.Millisecond))
	mlestest.StartProcEnv(t, ca.env, mles, addr, nil, nil, append(args, "-d", other)...)

	// The first handshake gets the cached certificate and starts the
	// order, slowly; then four members, two per reactor (gnet balances
	// by least connections).
	if _, err := joinRoundTripTLS(addr, "warm", cfg); err != nil {
		t.Fatalf("cached certificate: %v", err)
	}
	dialer := websocket.Dialer{Subprotocols: []string{"mles-websocket"}, TLSClientConfig: cfg, HandshakeTimeout: time.Minute}
	var members []*websocket.Conn
	for i := range 4 {
		c, _, err := dialer.Dial("wss://"+addr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"uid":"m%d","channel":"busy"}`, i)); err != nil {
			t.Fatal(err)
		}
		members = append(members, c)
	}
	if got := members[0].NetConn().(*tls.Conn).ConnectionState().PeerCertificates[0]; got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("members got certificate %s, want the cached %s", got.SerialNumber, first.SerialNumber)
	}
	if c := ca.count("Issued certificate serial "); c != 1 {
		t.Fatalf("pebble issued %d certificates before the members talked, want only the first run's: nothing in flight", c)
	}
	roundTrip := func(i int) time.Duration {
		t.Helper()
		from, to := members[i%4], members[(i+1)%4]
		msg := fmt.Sprintf("msg %d", i)
		start := time.Now()
		if err := from.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_ = to.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			_, b, err := to.ReadMessage()
			if err != nil {
				t.Fatalf("round trip %d: %v", i, err)
			}
			if string(b) == msg {
				return time.Since(start)
			}
		}
	}
	// Now a client asks for the other domain: it waits for the
	// certificate being ordered through the slow CA while the members
	// talk.
	var got *x509.Certificate // written before issued is sent
	issued := make(chan error, 1)
	go func() {
		var err error
		got, err = dialLeaf(addr, &tls.Config{RootCAs: roots, ServerName: other})
		issued <- err
	}()
	var worst time.Duration
	n := 0
	for ; ; n++ {
		select {
		case err := <-issued:
			if err != nil {
				t.Fatalf("the new certificate: %v", err)
			}
			if n < 20 {
				t.Fatalf("issuance took only %d round trips: not slow enough to show anything", n)
			}
			covers(t, got, acmeDomain, other)
			if c := ca.count("Issued certificate serial "); c != 2 {
				t.Fatalf("pebble issued %d certificates, want 2 (the first run's and the one for both names)", c)
			}
			t.Logf("%d round trips during the issuance, the slowest %v", n, worst)
			return
		default:
		}
		d := roundTrip(n)
		worst = max(worst, d)
		// A loop blocked by the issuance would hold a round trip for
		// seconds (the CA answers every chunk 150 ms late, over dozens
		// of exchanges); loopback round trips take about a millisecond,
		// and a busy 2-core machine may add a few hundred.
		if d > 1500*time.Millisecond {
			t.Fatalf("round trip %d took %v while a certificate was being issued", n, d)
		}
	}
}
