package tlsbridge

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
)

// Session ticket keys shared across restarts and servers (SPEC 5,
// --tls-ticket-keys): a client that reconnects after a restart, or to
// another server of the same name, resumes its TLS session instead of a
// full handshake, so a reconnect storm costs far less CPU. crypto/tls
// otherwise makes random keys per process.
//
// The file holds one key per line, 64 hex digits (32 bytes, e.g. from
// `openssl rand -hex 32`); blank lines and lines starting with # are
// skipped. The first key encrypts new tickets, every key decrypts: to
// rotate, put a new key first, keep the old ones a ticket lifetime (7
// days in crypto/tls), and send SIGHUP.

// maxTicketKeys bounds the keys of one file: each is tried on a ticket.
const maxTicketKeys = 16

// LoadTicketKeys reads a session ticket key file.
func LoadTicketKeys(path string) ([][32]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlsbridge: ticket keys: %w", err)
	}
	var keys [][32]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := hex.DecodeString(line)
		if err != nil || len(k) != 32 {
			return nil, fmt.Errorf("tlsbridge: ticket keys %s line %d: want 64 hex digits (32 bytes)", path, n)
		}
		keys = append(keys, [32]byte(k))
	}
	switch {
	case len(keys) == 0:
		return nil, fmt.Errorf("tlsbridge: ticket keys %s: no key", path)
	case len(keys) > maxTicketKeys:
		return nil, fmt.Errorf("tlsbridge: ticket keys %s: %d keys, at most %d", path, len(keys), maxTicketKeys)
	}
	return keys, nil
}

// SetTicketKeys loads path into cfg, for every connection from then on
// (SetSessionTicketKeys is safe while cfg is in use).
func SetTicketKeys(cfg *tls.Config, path string) error {
	keys, err := LoadTicketKeys(path)
	if err != nil {
		return err
	}
	cfg.SetSessionTicketKeys(keys)
	return nil
}
