package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseHTTPResponse(t *testing.T) {
	for _, tc := range []struct {
		name, in      string
		status        int
		body          int64
		enc           string
		close, errors bool
		partial       bool // n == 0: needs more bytes
	}{
		{name: "length", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Encoding: br\r\n\r\nhello", status: 200, body: 5, enc: "br"},
		{name: "length partial", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", partial: true},
		{name: "head partial", in: "HTTP/1.1 200 OK\r\nContent-Len", partial: true},
		{name: "chunked", in: "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-encoding: gzip\r\n\r\n5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\nTrailer: v\r\n\r\n", status: 200, body: 8, enc: "gzip"},
		{name: "chunked partial", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n", partial: true},
		{name: "not modified", in: "HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n", status: 304},
		{name: "close", in: "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", status: 404, close: true},
		{name: "no framing", in: "HTTP/1.1 200 OK\r\n\r\nbody", errors: true},
		{name: "bad status", in: "HTTX/1.1 200 OK\r\n\r\n", errors: true},
		{name: "bad chunk", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", errors: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, n, err := parseHTTPResponse([]byte(tc.in))
			switch {
			case tc.errors:
				if err == nil {
					t.Fatalf("no error, n %d", n)
				}
				return
			case err != nil:
				t.Fatal(err)
			case tc.partial:
				if n != 0 {
					t.Fatalf("n %d for a partial response", n)
				}
				return
			case n != len(tc.in):
				t.Fatalf("n %d, want %d", n, len(tc.in))
			}
			if resp.status != tc.status || resp.bodyLen != tc.body || string(resp.enc) != tc.enc || resp.close != tc.close {
				t.Fatalf("got status %d body %d enc %q close %v", resp.status, resp.bodyLen, resp.enc, resp.close)
			}
		})
	}
}

// TestStatic runs the static scenario, closed and open loop, against a
// server that answers compressed (chunked) or plain (Content-Length), and
// checks what it records.
func TestStatic(t *testing.T) {
	page := strings.Repeat("<p>hello</p>\n", 400)
	var gotAE atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAE.Store(r.Header.Get("Accept-Encoding"))
		if r.URL.Path == "/br" {
			w.Header().Set("Content-Encoding", "br")
			w.(http.Flusher).Flush() // chunked
		}
		w.Write([]byte(page))
	}))
	defer srv.Close()
	for _, path := range []string{"/br", "/plain"} {
		for _, rate := range []float64{0, 500} {
			o := Options{URL: srv.URL + path, Scenario: ScenarioStatic, Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond,
				Drain: time.Second, Dialers: 1, Reader: ReaderGoroutine, HTTPClient: HTTPClientRaw, AcceptEncoding: DefaultAcceptEncoding, Mode: ModeMles, HTTPRate: rate}
			if err := o.validate(map[string]bool{"http-rate": rate > 0}); err != nil {
				t.Fatal(err)
			}
			if o.Conns != 32 {
				t.Fatalf("default conns %d", o.Conns)
			}
			res, err := runStatic(context.Background(), &o)
			if err != nil {
				t.Fatal(err)
			}
			wantEnc := "identity"
			if path == "/br" {
				wantEnc = "br"
			}
			if res.Requests == 0 || res.HTTPErrors != 0 || res.HTTPEncoding != wantEnc || res.HTTPResponseBytes != float64(len(page)) {
				t.Fatalf("%s rate %g: %s", path, rate, res.summary())
			}
			if ae := gotAE.Load(); ae != DefaultAcceptEncoding {
				t.Fatalf("Accept-Encoding %q", ae)
			}
		}
	}
}
