package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mles/mles/internal/mlestest"
	"github.com/mles/mles/internal/poll"
)

// adminGet fetches url with a fresh connection (no pooled one that the
// server may have closed) and returns the status and body.
func adminGet(url string) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// startAdminBin builds mles and runs it in plain mode on a free port with
// --admin on another and the extra args; it returns the process, the
// WebSocket URL and the admin base URL, once /readyz answers 200.
func startAdminBin(t *testing.T, extra ...string) (*mlestest.Proc, string, string) {
	t.Helper()
	mles := mlestest.BuildBin(t, t.TempDir(), "mles", "github.com/mles/mles/cmd/mles")
	port, aport := mlestest.FreePort(t), mlestest.FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	adminURL := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(aport))
	args := append([]string{"--plain", "-p", strconv.Itoa(port), "--admin", net.JoinHostPort("127.0.0.1", strconv.Itoa(aport))}, extra...)
	p := mlestest.StartProc(t, mles, addr, nil, func(*mlestest.Proc) error {
		code, _, err := adminGet(adminURL + "/readyz")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("/readyz %d", code)
		}
		return err
	}, args...)
	return p, "ws://" + addr + "/", adminURL
}

// TestAdminReadyzDrain: the real binary with --admin and --drain-time 2s.
// /readyz answers 200 before SIGTERM; every client then gets 1001 and,
// checking /readyz the moment its 1001 arrives, sees 503 (the drain turns
// readiness off before it closes anything, and the admin listener stays up
// through the drain); the 1001s arrive over at least half the drain time.
// /healthz is 200 and, without --pprof, /debug/pprof/ is 404.
func TestAdminReadyzDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	const (
		clients   = 16
		drainTime = 2 * time.Second
	)
	srv, wsURL, adminURL := startAdminBin(t, "--reactors", "2", "--drain-time", drainTime.String(), "--drain-timeout", "3s")
	for _, c := range []struct {
		path string
		want int
	}{
		{"/readyz", http.StatusOK},
		{"/healthz", http.StatusOK},
		{"/debug/pprof/", http.StatusNotFound}, // no --pprof
	} {
		if code, body, err := adminGet(adminURL + c.path); err != nil || code != c.want {
			t.Fatalf("%s: %d %q %v, want %d", c.path, code, body, err, c.want)
		}
	}

	d := websocket.Dialer{Subprotocols: []string{"mles-websocket"}, HandshakeTimeout: 10 * time.Second}
	type seen struct {
		code  int           // close code, -1 if none
		at    time.Duration // when the close arrived, after SIGTERM
		ready int           // /readyz status right after it
		err   error
	}
	var signalled time.Time
	sigSent := make(chan struct{}) // closed once signalled is set
	results := make(chan seen, clients)
	var wg sync.WaitGroup
	for i := range clients {
		c, _, err := d.Dial(wsURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		hdr := fmt.Sprintf(`{"uid":"u%d","channel":"ch%d"}`, i, i%4)
		if err := c.WriteMessage(websocket.TextMessage, []byte(hdr)); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			s := seen{code: -1}
			var arrived time.Time
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					arrived = time.Now()
					if ce := (*websocket.CloseError)(nil); errors.As(err, &ce) {
						s.code = ce.Code
						s.ready, _, s.err = adminGet(adminURL + "/readyz")
					} else {
						s.err = err
					}
					break
				}
			}
			<-sigSent
			s.at = arrived.Sub(signalled)
			results <- s
		})
	}
	// Every client is a member before the signal.
	waitVarz(t, adminURL, func(v map[string]any) error {
		if m := v["members"]; m != float64(clients) {
			return fmt.Errorf("members %v, want %d", m, clients)
		}
		return nil
	})

	signalled = time.Now()
	close(sigSent)
	if err := srv.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-srv.Done:
	case <-time.After(drainTime + 10*time.Second):
		t.Fatal("mles still running 12 s after SIGTERM")
	}
	wg.Wait()
	close(results)
	var ats []time.Duration
	for s := range results {
		if s.code != websocket.CloseGoingAway || s.ready != http.StatusServiceUnavailable || s.err != nil {
			t.Errorf("client closed with %d at %v, then /readyz %d (err %v); want 1001, then 503", s.code, s.at, s.ready, s.err)
		}
		ats = append(ats, s.at)
	}
	slices.Sort(ats)
	spread := ats[len(ats)-1] - ats[0]
	t.Logf("1001s arrived from %v to %v after SIGTERM (spread %v over a drain time of %v)",
		ats[0].Round(time.Millisecond), ats[len(ats)-1].Round(time.Millisecond), spread.Round(time.Millisecond), drainTime)
	if spread < drainTime/2 {
		t.Errorf("the 1001s arrived within %v, want at least half the drain time (%v)", spread, drainTime/2)
	}
	if code := srv.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

// waitVarz polls /varz until ok accepts it.
func waitVarz(t *testing.T, adminURL string, ok func(map[string]any) error) {
	t.Helper()
	poll.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		_, body, err := adminGet(adminURL + "/varz")
		if err != nil {
			return err
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			return fmt.Errorf("/varz: %w", err)
		}
		return ok(v)
	})
}

// TestAdminPprofFlag: --pprof serves /debug/pprof/ on the admin listener
// of the real binary; --pprof without --admin is a usage error.
func TestAdminPprofFlag(t *testing.T) {
	if _, _, err := parse([]string{"--pprof"}); err == nil {
		t.Error("--pprof without --admin parsed")
	}
	if testing.Short() {
		t.Skip("builds the binary")
	}
	_, _, adminURL := startAdminBin(t, "--pprof")
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/healthz", "/metrics"} {
		if code, _, err := adminGet(adminURL + path); err != nil || code != http.StatusOK {
			t.Errorf("%s: %d %v, want 200", path, code, err)
		}
	}
}
