package main

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"testing"
)

// BenchmarkHandshakeCrypto prices the public-key operations of a TLS 1.3
// handshake on each side, to read the storm against: a full handshake
// costs the server a signature with its certificate's key and the client
// that signature's verification (crypto/tls checks it even with
// -insecure, which skips only the chain); both do an X25519 key generation
// and exchange, which a resumption keeps (psk_dhe_ke) while it skips the
// signature and its verification.
//
//	cd benchmarks && go test -run '^$' -bench HandshakeCrypto ./loadgen/
func BenchmarkHandshakeCrypto(b *testing.B) {
	digest := sha256.Sum256([]byte("TLS 1.3, server CertificateVerify"))
	pss := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	ecSig, err := ecdsa.SignASN1(rand.Reader, ec, digest[:])
	if err != nil {
		b.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	rsaSig, err := rsa.SignPSS(rand.Reader, rk, crypto.SHA256, digest[:], pss)
	if err != nil {
		b.Fatal(err)
	}
	peer, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("server/ECDSA-P256-sign", func(b *testing.B) {
		for b.Loop() {
			if _, err := ecdsa.SignASN1(rand.Reader, ec, digest[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("client/ECDSA-P256-verify", func(b *testing.B) {
		for b.Loop() {
			if !ecdsa.VerifyASN1(&ec.PublicKey, digest[:], ecSig) {
				b.Fatal("bad signature")
			}
		}
	})
	b.Run("server/RSA-2048-PSS-sign", func(b *testing.B) {
		for b.Loop() {
			if _, err := rsa.SignPSS(rand.Reader, rk, crypto.SHA256, digest[:], pss); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("client/RSA-2048-PSS-verify", func(b *testing.B) {
		for b.Loop() {
			if err := rsa.VerifyPSS(&rk.PublicKey, crypto.SHA256, digest[:], rsaSig, pss); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("each/X25519-keygen+exchange", func(b *testing.B) {
		for b.Loop() {
			k, err := ecdh.X25519().GenerateKey(rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := k.ECDH(peer.PublicKey()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
