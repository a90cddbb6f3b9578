package main

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
)

func TestHandshake(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serve(ln)
	for i := 0; i < 3; i++ {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		st := c.ConnectionState()
		if st.NegotiatedProtocol != "http/1.1" {
			t.Fatalf("ALPN %q", st.NegotiatedProtocol)
		}
		if alg := st.PeerCertificates[0].PublicKeyAlgorithm; alg != x509.ECDSA {
			t.Fatalf("key algorithm %v, want ECDSA", alg)
		}
		c.Close()
	}
}
