package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// HTTP clients, as given to -http-client.
const (
	// HTTPClientRaw is a hand-written HTTP/1.1 keep-alive client, one
	// goroutine per connection on Go's netpoller: one write of a prebuilt
	// request, the response parsed in place in a reused buffer, no
	// allocation per request. Measured here against both servers it costs
	// about half of net/http's client per request (13 against 27 us with
	// mles, 20 against 24 with nginx). A variant that drove every
	// connection from one goroutine on its own epoll set (a locked thread,
	// a second P) was tried and was no cheaper: on this VM the cost is the
	// kernel's (loopback TCP, wake-ups), not Go's.
	HTTPClientRaw = "raw"
	// HTTPClientStd is net/http's client (a Transport with one connection
	// per loop, DisableCompression so that it neither rewrites
	// Accept-Encoding nor decompresses). Kept to measure the difference.
	HTTPClientStd = "std"
)

// DefaultAcceptEncoding is what Chromium sends.
const DefaultAcceptEncoding = "gzip, deflate, br, zstd"

// maxHTTPResponse bounds a response the hand-written clients buffer whole.
const maxHTTPResponse = 16 << 20

// httpResponse is what a request's loop keeps of one response. enc aliases
// the client's buffer: valid until its next read.
type httpResponse struct {
	status  int
	bodyLen int64
	enc     []byte
	close   bool // the server closes the connection after it
}

var errHTTPResponse = errors.New("loadgen: malformed HTTP response")

var (
	crlf           = []byte("\r\n")
	crlfcrlf       = []byte("\r\n\r\n")
	hContentLength = []byte("content-length")
	hContentEnc    = []byte("content-encoding")
	hTransferEnc   = []byte("transfer-encoding")
	hConnection    = []byte("connection")
	vChunked       = []byte("chunked")
	vClose         = []byte("close")
	statusPrefix   = []byte("HTTP/1.")
)

// parseHTTPResponse parses one whole response (head and body) at the start
// of b. n is the bytes it takes, 0 (with a nil error) when b holds only part
// of it. Bodies need Content-Length or chunked framing (a body delimited by
// the end of the connection is refused).
func parseHTTPResponse(b []byte) (resp httpResponse, n int, err error) {
	end := bytes.Index(b, crlfcrlf)
	if end < 0 {
		return resp, 0, nil
	}
	head := b[:end+2] // each line with its CRLF
	i := bytes.Index(head, crlf)
	status := head[:i]
	if !bytes.HasPrefix(status, statusPrefix) || len(status) < 12 || status[8] != ' ' {
		return resp, 0, fmt.Errorf("%w: status line %q", errHTTPResponse, status)
	}
	code, ok := parseDec(status[9:12])
	if !ok {
		return resp, 0, fmt.Errorf("%w: status line %q", errHTTPResponse, status)
	}
	resp.status = int(code)
	length, chunked := int64(-1), false
	for rest := head[i+2:]; len(rest) > 0; {
		j := bytes.Index(rest, crlf)
		line := rest[:j]
		rest = rest[j+2:]
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return resp, 0, fmt.Errorf("%w: header %q", errHTTPResponse, line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, hContentLength):
			v, ok := parseDec(value)
			if !ok {
				return resp, 0, fmt.Errorf("%w: Content-Length %q", errHTTPResponse, value)
			}
			length = v
		case asciiEqualFold(name, hContentEnc):
			resp.enc = value
		case asciiEqualFold(name, hTransferEnc):
			chunked = asciiContainsFold(value, vChunked)
		case asciiEqualFold(name, hConnection):
			resp.close = asciiContainsFold(value, vClose)
		}
	}
	n = end + 4
	switch {
	case code == http.StatusNoContent || code == http.StatusNotModified || code/100 == 1:
	case chunked:
		for {
			j := bytes.Index(b[n:], crlf)
			if j < 0 {
				return resp, 0, nil
			}
			size := b[n : n+j]
			if k := bytes.IndexByte(size, ';'); k >= 0 {
				size = size[:k]
			}
			v, ok := parseHexSize(bytes.TrimSpace(size))
			if !ok {
				return resp, 0, fmt.Errorf("%w: chunk size %q", errHTTPResponse, size)
			}
			n += j + 2
			if v == 0 {
				break
			}
			if int64(len(b)-n) < v+2 {
				return resp, 0, nil
			}
			if !bytes.Equal(b[n+int(v):n+int(v)+2], crlf) {
				return resp, 0, fmt.Errorf("%w: no CRLF after a chunk", errHTTPResponse)
			}
			n += int(v) + 2
			resp.bodyLen += v
		}
		for { // trailers, up to the empty line
			j := bytes.Index(b[n:], crlf)
			if j < 0 {
				return resp, 0, nil
			}
			n += j + 2
			if j == 0 {
				break
			}
		}
	case length >= 0:
		if length > maxHTTPResponse {
			return resp, 0, fmt.Errorf("%w: body of %d bytes", errHTTPResponse, length)
		}
		if int64(len(b)-n) < length {
			return resp, 0, nil
		}
		n += int(length)
		resp.bodyLen = length
	default:
		return resp, 0, fmt.Errorf("%w: body without Content-Length or chunked framing", errHTTPResponse)
	}
	return resp, n, nil
}

func parseDec(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

func parseHexSize(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | int64(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | int64(c-'a'+10)
		case c >= 'A' && c <= 'F':
			v = v<<4 | int64(c-'A'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

func asciiEqualFold(a, lowerB []byte) bool {
	if len(a) != len(lowerB) {
		return false
	}
	for i, ch := range a {
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		if ch != lowerB[i] {
			return false
		}
	}
	return true
}

func asciiContainsFold(s, lowerSub []byte) bool {
	for i := 0; i+len(lowerSub) <= len(s); i++ {
		if asciiEqualFold(s[i:i+len(lowerSub)], lowerSub) {
			return true
		}
	}
	return false
}

// httpRequest is the run's one GET, prebuilt.
func httpRequest(t *target, acceptEncoding string) []byte {
	req := fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: mles-loadgen\r\nAccept: */*\r\n", t.path, t.host)
	if acceptEncoding != "" {
		req = fmt.Appendf(req, "Accept-Encoding: %s\r\n", acceptEncoding)
	}
	return append(req, "\r\n"...)
}

// dialHTTP connects to t (TLS for https).
func dialHTTP(ctx context.Context, t *target) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, err
	}
	if t.tls {
		tc := tls.Client(nc, t.tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, err
		}
		nc = tc
	}
	return nc, nil
}

// respBuf is a connection's read buffer: the bytes in buf[r:w] are
// received and not parsed yet.
type respBuf struct {
	buf  []byte
	r, w int
}

// room compacts the buffer and grows it when full; it fails past
// maxHTTPResponse.
func (b *respBuf) room() error {
	if b.r > 0 {
		n := copy(b.buf, b.buf[b.r:b.w])
		b.r, b.w = 0, n
	}
	if b.w == len(b.buf) {
		if len(b.buf) >= maxHTTPResponse {
			return fmt.Errorf("%w: response larger than %d bytes", errHTTPResponse, maxHTTPResponse)
		}
		nb := make([]byte, 2*len(b.buf))
		copy(nb, b.buf[:b.w])
		b.buf = nb
	}
	return nil
}

// next parses the next whole response in the buffer, if there is one.
func (b *respBuf) next() (httpResponse, bool, error) {
	resp, n, err := parseHTTPResponse(b.buf[b.r:b.w])
	if err != nil || n == 0 {
		return resp, false, err
	}
	b.r += n
	if b.r == b.w {
		b.r, b.w = 0, 0
	}
	return resp, true, nil
}

// httpDoer sends the run's one GET and reads the whole response.
type httpDoer interface {
	do(ctx context.Context) (httpResponse, error)
	Close() error
}

// newHTTPDoer returns a client of the given kind (raw or std) for t, with
// its own connection.
func newHTTPDoer(kind string, t *target, acceptEncoding string) httpDoer {
	if kind == HTTPClientStd {
		return newStdHTTP(t, acceptEncoding)
	}
	return &rawHTTP{t: t, req: httpRequest(t, acceptEncoding), rb: respBuf{buf: make([]byte, 16<<10)}}
}

// rawHTTP is one keep-alive connection of the hand-written client on Go's
// netpoller: a request is one write, a response as few reads as it takes
// (one for a small page).
type rawHTTP struct {
	t        *target
	req      []byte
	deadline time.Time
	nc       net.Conn
	rb       respBuf
}

// setDeadline bounds every later read and write of the connection, and of
// the connections it makes after this one.
func (c *rawHTTP) setDeadline(t time.Time) {
	c.deadline = t
	if c.nc != nil {
		c.nc.SetDeadline(t)
	}
}

func (c *rawHTTP) Close() error {
	if c.nc == nil {
		return nil
	}
	err := c.nc.Close()
	c.nc = nil
	return err
}

func (c *rawHTTP) do(ctx context.Context) (resp httpResponse, err error) {
	if c.nc == nil {
		nc, err := dialHTTP(ctx, c.t)
		if err != nil {
			return resp, err
		}
		if !c.deadline.IsZero() {
			nc.SetDeadline(c.deadline)
		}
		c.nc, c.rb.r, c.rb.w = nc, 0, 0
	}
	defer func() {
		if err != nil || resp.close {
			c.Close()
		}
	}()
	if _, err := c.nc.Write(c.req); err != nil {
		return resp, err
	}
	for {
		resp, ok, err := c.rb.next()
		if err != nil {
			return resp, err
		}
		if ok {
			return resp, nil
		}
		if err := c.rb.room(); err != nil {
			return resp, err
		}
		n, err := c.nc.Read(c.rb.buf[c.rb.w:])
		c.rb.w += n
		if n == 0 && err != nil {
			return resp, err
		}
	}
}

// stdHTTP is net/http's client with a connection of its own.
type stdHTTP struct {
	tr  *http.Transport
	cl  *http.Client
	req *http.Request
	enc []byte
}

func newStdHTTP(t *target, acceptEncoding string) *stdHTTP {
	tr := &http.Transport{
		MaxIdleConns:        1,
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		DisableCompression:  true, // keep Accept-Encoding as given, never decompress
		TLSClientConfig:     t.tlsConf,
	}
	scheme := "http"
	if t.tls {
		scheme = "https"
	}
	req, _ := http.NewRequest(http.MethodGet, scheme+"://"+t.host+t.path, nil)
	req.Header.Set("User-Agent", "mles-loadgen")
	req.Header.Set("Accept", "*/*")
	if acceptEncoding != "" {
		req.Header.Set("Accept-Encoding", acceptEncoding)
	}
	return &stdHTTP{tr: tr, cl: &http.Client{Transport: tr, Timeout: 30 * time.Second}, req: req}
}

func (c *stdHTTP) do(ctx context.Context) (resp httpResponse, err error) {
	r, err := c.cl.Do(c.req.WithContext(ctx))
	if err != nil {
		return resp, err
	}
	n, err := io.Copy(io.Discard, r.Body)
	r.Body.Close()
	if err != nil {
		return resp, err
	}
	c.enc = append(c.enc[:0], r.Header.Get("Content-Encoding")...)
	return httpResponse{status: r.StatusCode, bodyLen: n, enc: c.enc}, nil
}

func (c *stdHTTP) Close() error {
	c.tr.CloseIdleConnections()
	return nil
}

// httpTally is one loop's accounting of responses to requests counted in
// the window: latency, bytes, the Content-Encoding seen (which must not
// change) and errors. Merged after the loops stop.
type httpTally struct {
	n, errs    int64
	bytes      int64
	hist       histogram
	enc        string
	encSet     bool
	firstError error
}

// add records one request counted in the window: its response or error and
// its latency in microseconds.
func (t *httpTally) add(resp httpResponse, err error, us int64) {
	switch {
	case err != nil:
	case resp.status != http.StatusOK:
		err = fmt.Errorf("status %d", resp.status)
	case !t.encSet:
		t.enc, t.encSet = string(resp.enc), true
	case string(resp.enc) != t.enc: // no allocation: compared in place
		err = fmt.Errorf("Content-Encoding %q after %q", resp.enc, t.enc)
	}
	if err != nil {
		t.fail(err)
		return
	}
	t.n++
	t.bytes += resp.bodyLen
	t.hist.record(us)
}

func (t *httpTally) fail(err error) {
	t.errs++
	if t.firstError == nil {
		t.firstError = err
	}
}

func (t *httpTally) merge(o *httpTally) {
	t.n += o.n
	t.errs += o.errs
	t.bytes += o.bytes
	t.hist.merge(&o.hist)
	if t.firstError == nil {
		t.firstError = o.firstError
	}
	if o.encSet {
		switch {
		case !t.encSet:
			t.enc, t.encSet = o.enc, true
		case o.enc != t.enc:
			t.fail(fmt.Errorf("Content-Encoding %q on one connection, %q on another", o.enc, t.enc))
		}
	}
}

// encodingName is the Content-Encoding as recorded: "identity" when none.
func (t *httpTally) encodingName() string {
	if !t.encSet {
		return ""
	}
	if t.enc == "" {
		return "identity"
	}
	return t.enc
}
