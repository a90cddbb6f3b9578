package admin_test

// Helpers of the admin tests: an in-process server (plain mode) with the
// admin handler on an httptest server, gorilla/websocket members, and a
// /metrics scrape parsed with the Prometheus text parser.

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mles/mles/internal/poll"
	"github.com/mles/mles/internal/testserver"
	"github.com/mles/mles/server"
	"github.com/mles/mles/server/admin"
)

// wait bounds waits for things that should happen at once.
const wait = 10 * time.Second

// fixture is a running server and its admin handler.
type fixture struct {
	srv   *server.Server
	ws    string // ws://host:port/
	admin string // http://host:port of the admin handler
}

// start starts a plain server with mod applied to the test options and
// the admin handler over it (pprof as given); both stop when the test ends.
func start(t *testing.T, pprof bool, mod func(*server.Options)) *fixture {
	t.Helper()
	opts := testserver.Options(t, false)
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if mod != nil {
		mod(&opts)
	}
	srv := testserver.Start(t, opts)
	hs := httptest.NewServer(admin.New(admin.Config{Server: srv, Options: &opts, Pprof: pprof, Version: "test"}))
	t.Cleanup(hs.Close)
	return &fixture{srv: srv, ws: "ws://" + srv.Addr().String() + "/", admin: hs.URL}
}

// get fetches path from the admin handler and returns the status and body.
func (f *fixture) get(t testing.TB, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(f.admin + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// scrape is one /metrics answer, parsed.
type scrape map[string]*dto.MetricFamily

// scrape fetches and parses /metrics.
func (f *fixture) scrape(t testing.TB) scrape {
	t.Helper()
	code, body := f.get(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: status %d: %s", code, body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	return fams
}

// value is the sample of family name whose labels are exactly labels
// (name, value pairs), counter or gauge; 0 when there is none, as
// Prometheus reads a labeled counter that has not appeared yet.
func (s scrape) value(name string, labels ...string) float64 {
	fam := s[name]
	if fam == nil {
		return 0
	}
	for _, m := range fam.GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
	}
	return 0
}

// sum adds the samples of family name over all its labels.
func (s scrape) sum(name string) float64 {
	var n float64
	if fam := s[name]; fam != nil {
		for _, m := range fam.GetMetric() {
			n += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return n
}

func hasLabels(m *dto.Metric, pairs []string) bool {
	if len(m.GetLabel())*2 != len(pairs) {
		return false
	}
	for i := 0; i < len(pairs); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			found = found || (l.GetName() == pairs[i] && l.GetValue() == pairs[i+1])
		}
		if !found {
			return false
		}
	}
	return true
}

// dial opens a WebSocket to the server with the Mles subprotocol.
func dial(t testing.TB, url string, d *websocket.Dialer) *websocket.Conn {
	t.Helper()
	if d == nil {
		d = &websocket.Dialer{}
	}
	d.Subprotocols = []string{"mles-websocket"}
	d.HandshakeTimeout = wait
	c, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// join dials and sends the header frame of uid on channel.
func join(t testing.TB, url, uid, channel string, d *websocket.Dialer) *websocket.Conn {
	t.Helper()
	c := dial(t, url, d)
	hdr := fmt.Sprintf(`{"uid":%q,"channel":%q}`, uid, channel)
	if err := c.WriteMessage(websocket.TextMessage, []byte(hdr)); err != nil {
		t.Fatalf("%s: header: %v", uid, err)
	}
	return c
}

// readUntil reads c until a text message equal to want arrives (join
// frames and other messages are skipped).
func readUntil(t testing.TB, c *websocket.Conn, want string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	defer c.SetReadDeadline(time.Time{})
	for {
		_, p, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for %q: %v", want, err)
		}
		if string(p) == want {
			return
		}
	}
}

// closeCode reads c until it ends and returns the close code it got, or
// -1 with the error when the connection ended without a close frame.
func closeCode(c *websocket.Conn, within time.Duration) (int, error) {
	_ = c.SetReadDeadline(time.Now().Add(within))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code, nil
			}
			return -1, err
		}
	}
}

// waitMembers waits until the server counts n members.
func (f *fixture) waitMembers(t testing.TB, n int64) {
	t.Helper()
	poll.CheckFor(t, wait, 5*time.Millisecond, func() error {
		if got := f.srv.Stats().Members; got != n {
			return fmt.Errorf("members %d, want %d", got, n)
		}
		return nil
	})
}
