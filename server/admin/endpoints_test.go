package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dchest/siphash"
	"github.com/gorilla/websocket"

	"github.com/mles/mles/server"
	"github.com/mles/mles/server/admin"
)

// TestAdminHealthzReadyz: /healthz is 200 "ok" throughout; /readyz is 200
// before a drain and 503 from its start: a member that checks /readyz the
// moment its 1001 arrives sees 503, whichever member is closed first.
func TestAdminHealthzReadyz(t *testing.T) {
	f := start(t, false, nil)
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := f.get(t, path); code != http.StatusOK || body != "ok\n" {
			t.Fatalf("%s before the drain: %d %q, want 200 \"ok\"", path, code, body)
		}
	}
	const members = 6
	var cs []*websocket.Conn
	for i := range members {
		cs = append(cs, join(t, f.ws, fmt.Sprintf("r%d", i), "ready", nil))
	}
	f.waitMembers(t, members)

	type seen struct {
		code, ready int
		err         error
	}
	results := make(chan seen, members)
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			code, err := closeCode(c, wait)
			s := seen{code: code, err: err}
			if code == websocket.CloseGoingAway {
				resp, err := http.Get(f.admin + "/readyz")
				if err != nil {
					s.err = err
				} else {
					s.ready = resp.StatusCode
					resp.Body.Close()
				}
			}
			results <- s
		})
	}
	drained := make(chan error, 1)
	go func() { drained <- f.srv.Drain(context.Background(), 500*time.Millisecond) }()
	wg.Wait()
	close(results)
	for s := range results {
		if s.code != websocket.CloseGoingAway || s.ready != http.StatusServiceUnavailable || s.err != nil {
			t.Errorf("member closed with %d, then /readyz %d (err %v); want 1001, then 503", s.code, s.ready, s.err)
		}
	}
	if err := <-drained; err != nil {
		t.Errorf("Drain: %v", err)
	}
	if code, _ := f.get(t, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz after the drain: %d, want 503", code)
	}
	if code, body := f.get(t, "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz after the drain: %d %q, want 200 \"ok\"", code, body)
	}
}

// TestAdminVarz: /varz is JSON whose figures are the server's (compared
// with a /metrics scrape while the members are idle), with the options
// worth showing and no secret: the key of auth tokens never appears.
func TestAdminVarz(t *testing.T) {
	const key = "sekrit-key-7f3a"
	f := start(t, false, func(o *server.Options) {
		o.Key, o.KeySet = key, true
		o.MaxConns = 77
	})
	const members = 3
	var cs []*websocket.Conn
	for i := range members {
		uid, ch := fmt.Sprintf("v%d", i), "varz"
		c := dial(t, f.ws, nil)
		hdr := fmt.Sprintf(`{"uid":%q,"channel":%q,"auth":%q}`, uid, ch, token(uid, ch, key))
		if err := c.WriteMessage(websocket.TextMessage, []byte(hdr)); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	f.waitMembers(t, members)
	if err := cs[0].WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs[1:] {
		readUntil(t, c, "hello")
	}

	code, body := f.get(t, "/varz")
	if code != http.StatusOK {
		t.Fatalf("/varz: %d %s", code, body)
	}
	if strings.Contains(body, key) {
		t.Errorf("/varz shows the key:\n%s", body)
	}
	var v admin.Varz
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("/varz is not the Varz document: %v\n%s", err, body)
	}
	s := f.scrape(t)
	checks := []struct {
		name      string
		got, want float64
	}{
		{"connections", float64(v.Connections), s.value("mles_connections")},
		{"members", float64(v.Members), members},
		{"members vs /metrics", float64(v.Members), s.value("mles_members")},
		{"channels", float64(v.Channels), s.value("mles_channels")},
		{"messages_in", float64(v.MessagesIn), s.value("mles_messages_in_total")},
		{"deliveries", float64(v.Deliveries), s.value("mles_deliveries_total")},
		{"deliveries_bytes", float64(v.DeliveriesBytes), s.value("mles_deliveries_bytes_total")},
		{"history_messages", float64(v.HistoryMessages), s.value("mles_history_messages")},
		{"connections_accepted", float64(v.Accepted), s.value("mles_connections_accepted_total")},
		{"reactors", float64(len(v.ReactorConnections)), 2},
		{"reactor 0", float64(v.ReactorConnections[0]), s.value("mles_reactor_connections", "reactor", "0")},
		{"reactor 1", float64(v.ReactorConnections[1]), s.value("mles_reactor_connections", "reactor", "1")},
		{"refused max-conns", float64(v.Refused["max_conns"]), s.value("mles_connections_refused_total", "reason", "max_conns")},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("/varz %s: %v, want %v", c.name, c.got, c.want)
		}
	}
	if v.Deliveries < members-1 || v.MessagesIn < 1 {
		t.Errorf("/varz deliveries %d, messages in %d after a message to %d members", v.Deliveries, v.MessagesIn, members)
	}
	o := v.Options
	switch {
	case o == nil:
		t.Fatal("/varz has no options")
	case !o.Auth || o.TLS || o.MaxConns != 77 || o.Reactors != 2 || o.History != server.DefaultHistory:
		t.Errorf("/varz options %+v: want auth on, TLS off, max_conns 77, 2 reactors, the default history", *o)
	}
	if v.Version != "test" || !strings.HasPrefix(v.GoVersion, "go") || v.Start.IsZero() || v.Now.Before(v.Start) || !v.Ready || v.Draining {
		t.Errorf("/varz header: version %q, go %q, start %v, now %v, ready %v, draining %v", v.Version, v.GoVersion, v.Start, v.Now, v.Ready, v.Draining)
	}
	if _, err := time.ParseDuration(v.Uptime); err != nil {
		t.Errorf("/varz uptime %q: %v", v.Uptime, err)
	}
	if v.Listen != f.srv.Addr().String() {
		t.Errorf("/varz listen %q, want %q", v.Listen, f.srv.Addr())
	}
}

// TestAdminPprof: /debug/pprof/ is served only with Config.Pprof.
func TestAdminPprof(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pprof bool
		want  int
	}{
		{"off", false, http.StatusNotFound}, // the default: no profiling endpoints
		{"on", true, http.StatusOK},         // Config.Pprof (--pprof)
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := start(t, tc.pprof, nil)
			for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=1"} {
				if code, _ := f.get(t, path); code != tc.want {
					t.Errorf("%s: %d, want %d", path, code, tc.want)
				}
			}
		})
	}
}

// TestStatusPageServed: / is one HTML page with no external asset that
// reads varz; other unknown paths are 404.
func TestStatusPageServed(t *testing.T) {
	f := start(t, false, nil)
	resp, err := http.Get(f.admin + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("/: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !strings.Contains(page, "fetch('varz'") {
		t.Error("the status page does not read varz")
	}
	// No external asset: no src or href to another place, no URL at all.
	if m := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//|https?://|@import`).FindString(page); m != "" {
		t.Errorf("the status page refers to an external asset: %q", m)
	}
	for _, path := range []string{"/nope", "/metrics/x", "/index.html"} {
		if code, _ := f.get(t, path); code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, code)
		}
	}
}

// token is the SPEC 1.2 auth token, computed apart from the server:
// SipHash-2-4 with key (0, 0) over uid, channel and key, as %016x.
func token(uid, channel, key string) string {
	return fmt.Sprintf("%016x", siphash.Hash(0, 0, []byte(uid+channel+key)))
}
