package interop_test

// Debian's nginx (TLS at nginx, WebSocket proxying, X-Forwarded-For) and
// HAProxy (TCP mode, PROXY protocol v2 and v1) in front of a --plain
// server, as an operator deploys them. Clients (gorilla/websocket) dial the
// proxy from two loopback addresses; the proxies reach the server from a
// third (127.0.0.3, the trusted proxy), so the per-address limit and the
// log lines can only see the clients' addresses through the protocol.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mles/mles/internal/mlestest"
	"github.com/mles/mles/internal/poll"
	"github.com/mles/mles/internal/testserver"
	"github.com/mles/mles/server"
	"github.com/mles/mles/tlsbridge"
)

const proxyAddr = "127.0.0.3" // where the proxies connect to the server from

// startBehindProxy starts a --plain server that trusts proxyAddr, allows
// perIP connections per client address and logs into the returned buffer.
func startBehindProxy(t *testing.T, perIP int, proxyProtocol bool) (*server.Server, *mlestest.LockedBuffer) {
	t.Helper()
	var logs mlestest.LockedBuffer
	opts := testserver.Options(t, false)
	opts.MaxConnsPerIP = perIP
	opts.ProxyProtocol = proxyProtocol
	opts.TrustedProxies = []netip.Prefix{netip.MustParsePrefix(proxyAddr + "/32")}
	opts.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return testserver.Start(t, opts), &logs
}

// startDaemon runs a proxy in the foreground until the test ends and waits
// until it accepts on each of addrs.
func startDaemon(t *testing.T, name string, args []string, addrs ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, name, args...)
	var out mlestest.LockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("%s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("%s output:\n%s", name, mlestest.Tail(out.String(), 30))
		}
	})
	poll.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		select {
		case <-done:
			t.Fatalf("%s exited: %s", name, mlestest.Tail(out.String(), 30))
		default:
		}
		for _, a := range addrs {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err != nil {
				return err
			}
			c.Close()
		}
		return nil
	})
}

func requireBinary(t *testing.T, name string) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/" + name, "/usr/bin/" + name} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	unavailable(t, name+" not installed (Debian package "+name+")")
	return ""
}

// proxyClient dials url from the loopback address from through a proxy
// with gorilla/websocket and joins channel as uid. It returns the response
// status when the upgrade is refused, or an error when the connection is.
func proxyClient(url, from, uid, channel string, tlsCfg *tls.Config) (*websocket.Conn, int, error) {
	d := websocket.Dialer{
		Subprotocols:     []string{"mles-websocket"},
		TLSClientConfig:  tlsCfg,
		HandshakeTimeout: 10 * time.Second,
		NetDialContext: (&net.Dialer{
			LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)},
			Timeout:   10 * time.Second,
		}).DialContext,
	}
	c, resp, err := d.Dial(url, nil)
	if err != nil {
		if resp != nil {
			return nil, resp.StatusCode, err
		}
		return nil, 0, err
	}
	hdr, _ := json.Marshal(map[string]string{"uid": uid, "channel": channel})
	if err := c.WriteMessage(websocket.TextMessage, hdr); err != nil {
		c.Close()
		return nil, 0, err
	}
	return c, http.StatusSwitchingProtocols, nil
}

// chat has each client send a line that every other one must receive.
func chat(t *testing.T, clients []*websocket.Conn, tag string) {
	t.Helper()
	for i, from := range clients {
		text := fmt.Sprintf("%s from %d", tag, i)
		if err := from.WriteMessage(websocket.TextMessage, []byte(text)); err != nil {
			t.Fatalf("%s: send %d: %v", tag, i, err)
		}
		for j, to := range clients {
			if j == i {
				continue
			}
			_ = to.SetReadDeadline(time.Now().Add(10 * time.Second))
			for {
				_, p, err := to.ReadMessage()
				if err != nil {
					t.Fatalf("%s: client %d waiting for %q: %v", tag, j, text, err)
				}
				if string(p) == text {
					break
				}
				if !strings.HasPrefix(string(p), tag+" from ") {
					continue // history: join frames and earlier rounds
				}
				t.Fatalf("%s: client %d got %q, want %q", tag, j, p, text)
			}
		}
	}
}

// limitBehindProxy is the scenario both proxies run: two clients from
// 127.0.0.1 and one from 127.0.0.2 join through the proxy and chat; a third
// from 127.0.0.1 is refused (refused reports how), a second from 127.0.0.2
// is not; the refusal's log line names the client, not the proxy.
func limitBehindProxy(t *testing.T, s *server.Server, logs *mlestest.LockedBuffer, url string, tlsCfg *tls.Config, refused func(status int, err error) error) {
	t.Helper()
	// The start-up probe of the proxy may have reached the server: wait
	// until its connection is gone, so that it takes no client's slot.
	poll.CheckFor(t, 20*time.Second, 5*time.Millisecond, func() error {
		if n := s.Stats().Conns; n != 0 {
			return fmt.Errorf("%d connections before the clients", n)
		}
		return nil
	})
	var clients []*websocket.Conn
	for i, from := range []string{"127.0.0.1", "127.0.0.1", "127.0.0.2"} {
		c, status, err := proxyClient(url, from, fmt.Sprintf("u%d", i), "proxied", tlsCfg)
		if err != nil {
			t.Fatalf("client %d from %s: status %d: %v", i, from, status, err)
		}
		t.Cleanup(func() { c.Close() })
		clients = append(clients, c)
	}
	waitMembers(t, s, 3)
	chat(t, clients, "through the proxy")

	_, status, err := proxyClient(url, "127.0.0.1", "over", "proxied", tlsCfg)
	if err := refused(status, err); err != nil {
		t.Fatalf("third connection from 127.0.0.1: %v", err)
	}
	c, status, err := proxyClient(url, "127.0.0.2", "u3", "proxied", tlsCfg)
	if err != nil {
		t.Fatalf("second client from 127.0.0.2: status %d: %v", status, err)
	}
	t.Cleanup(func() { c.Close() })
	clients = append(clients, c)
	waitMembers(t, s, 4)
	chat(t, clients, "after the refusal")

	if got := s.Stats().RefusedPerIP; got != 1 {
		t.Fatalf("RefusedPerIP = %d, want 1", got)
	}
	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "max-conns-per-ip") {
			line = l
		}
	}
	if !strings.Contains(line, "remote=127.0.0.1") {
		t.Fatalf("refusal log line %q does not name the client 127.0.0.1", line)
	}
	for _, c := range clients {
		c.Close()
	}
	poll.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		if st := s.Stats(); st.Members != 0 || st.PerIPAddrs != 0 {
			return fmt.Errorf("members %d, per-IP addresses %d after the clients left", st.Members, st.PerIPAddrs)
		}
		return nil
	})
}

func waitMembers(t *testing.T, s *server.Server, n int64) {
	t.Helper()
	poll.CheckFor(t, 20*time.Second, 5*time.Millisecond, func() error {
		if got := s.Stats().Members; got != n {
			return fmt.Errorf("members %d, want %d", got, n)
		}
		return nil
	})
}

// TestInteropNginx: nginx terminates TLS and proxies WebSocket to a
// --plain server with X-Forwarded-For; --trusted-proxies makes the limit
// count the clients (429 through nginx for the one over it).
func TestInteropNginx(t *testing.T) {
	nginx := requireBinary(t, "nginx")
	s, logs := startBehindProxy(t, 2, false)
	dir := t.TempDir()
	cert, err := tlsbridge.SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}))
	writeFile(t, filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}))
	port := mlestest.FreePort(t)
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 256; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen 127.0.0.1:%[2]d ssl;
		ssl_certificate %[1]s/cert.pem;
		ssl_certificate_key %[1]s/key.pem;
		location / {
			proxy_pass http://%[3]s;
			proxy_http_version 1.1;
			proxy_set_header Upgrade $http_upgrade;
			proxy_set_header Connection "upgrade";
			proxy_set_header Host $host;
			proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
			proxy_bind %[4]s;
			proxy_read_timeout 1h;
		}
	}
}
`, dir, port, s.Addr(), proxyAddr)
	writeFile(t, filepath.Join(dir, "nginx.conf"), []byte(conf))
	startDaemon(t, nginx, []string{"-e", filepath.Join(dir, "error.log"), "-p", dir, "-c", filepath.Join(dir, "nginx.conf")},
		fmt.Sprintf("127.0.0.1:%d", port))

	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	limitBehindProxy(t, s, logs, fmt.Sprintf("wss://127.0.0.1:%d/", port), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"},
		func(status int, err error) error {
			if status != http.StatusTooManyRequests {
				return fmt.Errorf("status %d (%v), want 429 passed on by nginx", status, err)
			}
			return nil
		})
}

// TestInteropHAProxy: HAProxy in TCP mode sends the PROXY protocol (v2 on
// one frontend, v1 on another) to a --proxy-protocol server; the limit
// counts the clients, and the one over it is closed at the header.
func TestInteropHAProxy(t *testing.T) {
	haproxy := requireBinary(t, "haproxy")
	for _, send := range []string{"send-proxy-v2", "send-proxy"} {
		t.Run(send, func(t *testing.T) {
			s, logs := startBehindProxy(t, 2, true)
			dir := t.TempDir()
			port := mlestest.FreePort(t)
			conf := fmt.Sprintf(`global
	maxconn 256
defaults
	mode tcp
	timeout connect 5s
	timeout client 1h
	timeout server 1h
frontend mles
	bind 127.0.0.1:%d
	default_backend mles
backend mles
	server s1 %s %s source %s
`, port, s.Addr(), send, proxyAddr)
			writeFile(t, filepath.Join(dir, "haproxy.cfg"), []byte(conf))
			startDaemon(t, haproxy, []string{"-db", "-f", filepath.Join(dir, "haproxy.cfg")}, fmt.Sprintf("127.0.0.1:%d", port))
			limitBehindProxy(t, s, logs, fmt.Sprintf("ws://127.0.0.1:%d/", port), nil,
				func(status int, err error) error {
					if err == nil || status != 0 {
						return fmt.Errorf("status %d, err %v; want the connection closed", status, err)
					}
					return nil
				})
		})
	}
}

func writeFile(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, bytes.TrimLeft(data, "\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}
