package www

import (
	"bytes"
	"container/list"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Compression (mles-rs -C/--compression-cache): a text-like file is sent
// brotli-, zstd- or gzip-compressed when the client accepts it, in that
// order of preference; the compressed bytes are cached by path, encoding,
// size and modification time, in a cache bounded in bytes (least recently
// used out first). A Range request gets the file as it is.

// DefaultCompressionCacheMB is mles-rs's default of -C.
const DefaultCompressionCacheMB = 24

const (
	// compressMin: smaller files are sent as they are.
	compressMin = 256
	// compressMax: larger files are sent as they are (compressing them per
	// miss would cost more than it saves, and the cache could not keep them).
	compressMax = 8 << 20
)

// encodings in the server's order of preference.
var encodings = []string{"br", "zstd", "gzip"}

// compressible reports whether a content type is worth compressing.
func compressible(ctype string) bool {
	ct, _, _ := mime.ParseMediaType(ctype)
	switch {
	case strings.HasPrefix(ct, "text/"):
		return true
	case strings.HasSuffix(ct, "+xml"), strings.HasSuffix(ct, "+json"):
		return true
	}
	switch ct {
	case "application/javascript", "application/json", "application/xml",
		"application/wasm", "application/manifest+json", "image/svg+xml":
		return true
	}
	return false
}

// accepted picks the preferred encoding the request accepts (q > 0), or "".
func accepted(r *http.Request) string {
	ae := r.Header.Values("Accept-Encoding")
	if len(ae) == 0 {
		return ""
	}
	ok := map[string]bool{}
	for _, v := range ae {
		for _, part := range strings.Split(v, ",") {
			name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			q := 1.0
			if qs, found := strings.CutPrefix(strings.TrimSpace(params), "q="); found {
				if f, err := strconv.ParseFloat(qs, 64); err == nil {
					q = f
				}
			}
			ok[strings.ToLower(strings.TrimSpace(name))] = q > 0
		}
	}
	for _, e := range encodings {
		if ok[e] {
			return e
		}
	}
	return ""
}

// compress returns b encoded with enc.
func compress(enc string, b []byte) []byte {
	var buf bytes.Buffer
	var w io.WriteCloser
	switch enc {
	case "br":
		w = brotli.NewWriterLevel(&buf, 6)
	case "zstd":
		zw, _ := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedBetterCompression))
		w = zw
	case "gzip":
		w, _ = gzip.NewWriterLevel(&buf, gzip.BestCompression)
	}
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}

// zcache is the compressed-file cache.
type zcache struct {
	max int64

	mu    sync.Mutex
	used  int64
	order *list.List // front: most recently used; values are *zentry
	byKey map[zkey]*list.Element
}

type zkey struct {
	host, name, enc string
	size, mtime     int64
}

type zentry struct {
	key  zkey
	data []byte
}

func newZCache(maxBytes int64) *zcache {
	if maxBytes <= 0 {
		return nil
	}
	return &zcache{max: maxBytes, order: list.New(), byKey: map[zkey]*list.Element{}}
}

func (c *zcache) get(k zkey) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byKey[k]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*zentry).data, true
}

// put keeps data unless it alone is over the cap, evicting the least
// recently used entries to make room.
func (c *zcache) put(k zkey, data []byte) {
	n := int64(len(data))
	if n > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byKey[k]; ok {
		return
	}
	for c.used+n > c.max {
		old := c.order.Remove(c.order.Back()).(*zentry)
		delete(c.byKey, old.key)
		c.used -= int64(len(old.data))
	}
	c.byKey[k] = c.order.PushFront(&zentry{key: k, data: data})
	c.used += n
}

// bytes returns what the cache holds.
func (c *zcache) bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

// variant tells how a file of that name and size goes out: its content
// type, and the encoding the request takes ("" when it accepts none of
// ours or asks for a Range); worth is false for a file never compressed
// (no cache, not text-like, or outside the size bounds).
func (h *Handler) variant(r *http.Request, name string, size int64) (ctype, enc string, worth bool) {
	ctype = mime.TypeByExtension(path.Ext(name))
	if h.zc == nil || !compressible(ctype) || size < compressMin || size > compressMax {
		return ctype, "", false
	}
	if r.Header.Get("Range") != "" {
		return ctype, "", true
	}
	return ctype, accepted(r), true
}

// serveCompressed sends the file compressed when the request and the file
// allow it, and reports whether it did. The caller has set ETag.
func (h *Handler) serveCompressed(w http.ResponseWriter, r *http.Request, host, name string, info fs.FileInfo, f io.Reader) bool {
	ctype, enc, worth := h.variant(r, name, info.Size())
	if !worth {
		return false
	}
	if enc == "" {
		w.Header().Add("Vary", "Accept-Encoding")
		return false
	}
	k := zkey{host: host, name: name, enc: enc, size: info.Size(), mtime: info.ModTime().UnixNano()}
	data, ok := h.zc.get(k)
	if !ok {
		raw, err := io.ReadAll(io.LimitReader(f, compressMax+1))
		if err != nil || int64(len(raw)) != info.Size() {
			return false // changed under us: send it as it is now
		}
		data = compress(enc, raw)
		h.zc.put(k, data)
	}
	w.Header().Set("ETag", etagOf(info.ModTime(), info.Size(), enc))
	writeCompressed(w, r, name, info.ModTime(), ctype, enc, data)
	return true
}
