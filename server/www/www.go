// Package www holds the handlers of an Mles server's HTTP side (SPEC 3).
// Handler serves the static site (mles-rs -w/--wwwroot): DIR/<host>/<path>,
// where host is the request's Host with the port stripped and case folded,
// index.html for a directory, the content type by extension, HEAD, ETag
// and Last-Modified with conditional GET, and Range (net/http's
// ServeContent), and text-like files brotli-, zstd- or gzip-compressed
// from a bounded cache (compress.go). No path leaves the host's directory:
// ".." and symbolic links out of it are refused (os.Root), as are hosts
// that are not a plain name. A .json file gets Access-Control-Allow-Origin:
// * as in mles-rs. At most FileLimit files are read at once (mles-rs
// -f/--filelimit). route.go has the proxies (-P), the redirect (-r) and
// OnlyHosts, which keeps the whole HTTP side to the -d domains.
//
// The handlers run on the server's HTTP side, off the event loops.
package www

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path"
	"strings"
	"time"
)

// DefaultFileLimit is mles-rs's default of -f/--filelimit.
const DefaultFileLimit = 256

// Config configures a Handler.
type Config struct {
	// Root is the site directory; a host's files are in Root/<host>.
	Root string
	// FileLimit is the most files read at once; 0 means DefaultFileLimit.
	// A request beyond it waits for a slot while its client is connected.
	FileLimit int
	// CompressionCache bounds the cache of compressed files in bytes
	// (mles-rs -C, in MB there); 0 sends every file as it is.
	CompressionCache int64
}

// Handler is the static site's http.Handler.
type Handler struct {
	root  *os.Root
	slots chan struct{}
	zc    *zcache // nil: no compression
	stats statCache
}

// New opens cfg.Root and returns its Handler. Close releases the root.
func New(cfg Config) (*Handler, error) {
	root, err := os.OpenRoot(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("wwwroot: %w", err)
	}
	limit := cfg.FileLimit
	if limit <= 0 {
		limit = DefaultFileLimit
	}
	return &Handler{root: root, slots: make(chan struct{}, limit), zc: newZCache(cfg.CompressionCache), stats: statCache{valid: statValid}}, nil
}

// Close releases the site directory.
func (h *Handler) Close() error { return h.root.Close() }

// hostName returns the request's host for the file system: port stripped,
// lower case, and only a plain name (no separators, no leading dot).
func hostName(r *http.Request) (string, bool) {
	host := r.Host
	if hp, _, err := net.SplitHostPort(host); err == nil {
		host = hp
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]") // an IPv6 literal
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" || host[0] == '.' || strings.ContainsAny(host, `/\`) {
		return "", false
	}
	return host, true
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	host, ok := hostName(r)
	if !ok {
		http.NotFound(w, r)
		return
	}
	urlPath := r.URL.Path
	if !strings.HasPrefix(urlPath, "/") {
		urlPath = "/" + urlPath
	}
	key := statKey{host: host, urlPath: urlPath}
	if h.serveFromCache(w, r, key) {
		return
	}
	select {
	case h.slots <- struct{}{}:
		defer func() { <-h.slots }()
	case <-r.Context().Done():
		return
	}
	site, err := h.root.OpenRoot(host)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer site.Close()

	name := strings.TrimPrefix(path.Clean(urlPath), "/")
	if name == "" {
		name = "."
	}
	f, info, err := open(site, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	if info.IsDir() {
		f.Close()
		if !strings.HasSuffix(urlPath, "/") {
			// As net/http's FileServer: relative links in the index
			// resolve under the directory.
			target := path.Base(urlPath) + "/"
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, target, http.StatusMovedPermanently)
			return
		}
		name = path.Join(name, "index.html")
		if f, info, err = open(site, name); err != nil || info.IsDir() {
			if err == nil {
				f.Close()
			}
			http.NotFound(w, r)
			return
		}
	}
	defer f.Close()
	h.stats.put(key, name, info, time.Now())
	hdr := w.Header()
	hdr.Set("ETag", etagOf(info.ModTime(), info.Size(), ""))
	if path.Ext(name) == ".json" {
		hdr.Set("Access-Control-Allow-Origin", "*")
	}
	if h.serveCompressed(w, r, host, name, info, f) {
		return
	}
	http.ServeContent(w, r, name, info.ModTime(), f)
}

// open opens name in the site and stats it. Only regular files and
// directories are served.
func open(site *os.Root, name string) (*os.File, fs.FileInfo, error) {
	f, err := site.Open(name)
	if err != nil {
		return nil, nil, err
	}
	info, err := f.Stat()
	if err == nil && !info.Mode().IsRegular() && !info.IsDir() {
		err = errors.New("www: not a regular file")
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, info, nil
}

// etagOf is a strong validator from the file's modification time and
// size, as nginx makes it, and the encoding of a compressed response.
func etagOf(mtime time.Time, size int64, enc string) string {
	if enc != "" {
		return fmt.Sprintf(`"%x-%x-%s"`, mtime.UnixNano()/int64(time.Microsecond), size, enc)
	}
	return fmt.Sprintf(`"%x-%x"`, mtime.UnixNano()/int64(time.Microsecond), size)
}
