package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeMlesTLS is a TLS server that speaks just enough of Mles for the storm:
// the upgrade (101), then it answers pings with pongs and ignores the rest.
// Once the file rotated exists, it issues and reads session tickets with
// another key, as a restarted server without the old keys would.
func fakeMlesTLS(t *testing.T, rotated string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	var k1, k2 [32]byte
	rand.Read(k1[:])
	rand.Read(k2[:])
	base := &tls.Config{Certificates: []tls.Certificate{cert}}
	base.SetSessionTicketKeys([][32]byte{k1})
	after := base.Clone()
	after.SetSessionTicketKeys([][32]byte{k2})
	cfg := base.Clone()
	cfg.SetSessionTicketKeys([][32]byte{k1})
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		if _, err := os.Stat(rotated); err == nil {
			return after, nil
		}
		return base, nil
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveFakeMles(c)
		}
	}()
	return "wss://" + ln.Addr().String() + "/"
}

func serveFakeMles(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		if line == "\r\n" {
			break
		}
	}
	if _, err := io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"); err != nil {
		return
	}
	for {
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return
		}
		n := int(h[1] & 0x7f) // the storm's frames are short
		buf := make([]byte, 4+n)
		if _, err := io.ReadFull(br, buf); err != nil {
			return
		}
		if h[0]&0x0f == opPing {
			if _, err := c.Write([]byte{0x80 | opPong, 0}); err != nil {
				return
			}
		}
	}
}

func TestStorm(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rotate  bool
		resumed int
	}{
		{"same keys", false, 40},
		{"new keys", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			rotated := filepath.Join(dir, "rotated")
			url := fakeMlesTLS(t, rotated)
			// The restart: the fake server switches keys (or not) and
			// stays the same process, whose PID the script prints.
			script := filepath.Join(dir, "restart")
			body := "#!/bin/sh\necho restarting >&2\n"
			if tc.rotate {
				body += "touch " + rotated + "\n"
			}
			body += "echo $PPID\n"
			if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
				t.Fatal(err)
			}
			o := &Options{URL: url, Scenario: ScenarioStorm, Mode: ModeMles, Duration: time.Second, Dialers: 8,
				Insecure: true, TLSCurves: "x25519", Reader: ReaderGoroutine, HTTPClient: HTTPClientRaw,
				Conns: 40, RestartCmd: script}
			if err := o.validate(map[string]bool{"conns": true}); err != nil {
				t.Fatal(err)
			}
			if o.Members != 10 {
				t.Fatalf("members %d, want the storm's default 10", o.Members)
			}
			res, err := runStorm(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if res.Params.Cert != "ECDSA P-256" || res.Phase1ClientCPUS <= 0 || res.Phase1WindowS <= 0 {
				t.Errorf("cert %q, phase 1 generator CPU %v over %v s", res.Params.Cert, res.Phase1ClientCPUS, res.Phase1WindowS)
			}
			if res.TicketsHeld != 40 || res.Phase1Failed != 0 {
				t.Errorf("phase 1: %d tickets kept, %d failed; want 40, 0", res.TicketsHeld, res.Phase1Failed)
			}
			if res.Connects != 40 || res.ConnectErrors != 0 || res.Errors != 0 {
				t.Errorf("storm: %d joined, %d failed, %d errors (%s); want 40, 0, 0", res.Connects, res.ConnectErrors, res.Errors, res.FirstError)
			}
			if res.Resumed != tc.resumed || res.ResumedShare == nil || *res.ResumedShare != float64(tc.resumed)/40 {
				t.Errorf("resumed %d (share %v), want %d", res.Resumed, res.ResumedShare, tc.resumed)
			}
			if res.ServerPID != os.Getpid() {
				t.Errorf("restarted server PID %d, want the script's output %d", res.ServerPID, os.Getpid())
			}
			if res.Samples != 40 || res.P99Ms <= 0 || res.StormS <= 0 || res.ConnectsPerS <= 0 {
				t.Errorf("storm figures: samples %d p99 %v s %v connects/s %v", res.Samples, res.P99Ms, res.StormS, res.ConnectsPerS)
			}
			if !strings.Contains(res.summary(), "storm 40/40 joined") {
				t.Errorf("summary: %s", res.summary())
			}
		})
	}
}
