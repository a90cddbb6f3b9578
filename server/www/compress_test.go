package www

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func decode(t *testing.T, enc string, b []byte) []byte {
	t.Helper()
	var r io.Reader
	switch enc {
	case "br":
		r = brotli.NewReader(bytes.NewReader(b))
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	case "gzip":
		gr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		r = gr
	default:
		return b
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: %v", enc, err)
	}
	return out
}

func TestCompression(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "example.org")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	js := []byte(strings.Repeat("function mles(x) { return x + 1; }\n", 200))
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("app.js", js)
	write("tiny.css", []byte("body{}"))
	write("pic.png", bytes.Repeat([]byte{0x89, 'P', 'N', 'G'}, 200))
	h, err := New(Config{Root: root, CompressionCache: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	for _, tc := range []struct{ accept, want string }{
		{"br", "br"},
		{"gzip, deflate, br, zstd", "br"},
		{"zstd, gzip", "zstd"},
		{"gzip", "gzip"},
		{"gzip, br;q=0", "gzip"},
		{"identity", ""},
		{"", ""},
	} {
		r := get(t, h, "GET", "example.org", "/app.js", map[string]string{"Accept-Encoding": tc.accept})
		b := []byte(body(r))
		if got := r.Header.Get("Content-Encoding"); got != tc.want {
			t.Fatalf("Accept-Encoding %q: Content-Encoding %q, want %q", tc.accept, got, tc.want)
		}
		if ct := r.Header.Get("Content-Type"); ct != "text/javascript; charset=utf-8" {
			t.Fatalf("Accept-Encoding %q: Content-Type %q", tc.accept, ct)
		}
		if !strings.Contains(r.Header.Get("Vary"), "Accept-Encoding") {
			t.Fatalf("Accept-Encoding %q: no Vary", tc.accept)
		}
		if !bytes.Equal(decode(t, tc.want, b), js) {
			t.Fatalf("Accept-Encoding %q: the decoded body differs", tc.accept)
		}
		if tc.want != "" && len(b) >= len(js)/4 {
			t.Fatalf("%s: %d bytes from %d", tc.want, len(b), len(js))
		}
	}
	// The compressed variant has its own ETag, and conditional GET works on it.
	r := get(t, h, "GET", "example.org", "/app.js", map[string]string{"Accept-Encoding": "br"})
	tag := r.Header.Get("ETag")
	if !strings.HasSuffix(tag, `-br"`) {
		t.Fatalf("ETag of the brotli variant %q", tag)
	}
	if r := get(t, h, "GET", "example.org", "/app.js", map[string]string{"Accept-Encoding": "br", "If-None-Match": tag}); r.StatusCode != 304 {
		t.Fatalf("If-None-Match on the variant: %d", r.StatusCode)
	}
	// Range: the file as it is.
	r = get(t, h, "GET", "example.org", "/app.js", map[string]string{"Accept-Encoding": "br", "Range": "bytes=0-7"})
	if r.StatusCode != 206 || r.Header.Get("Content-Encoding") != "" || body(r) != string(js[:8]) {
		t.Fatalf("Range with br accepted: %d %q", r.StatusCode, r.Header.Get("Content-Encoding"))
	}
	// Small and binary files are sent as they are.
	for _, p := range []string{"/tiny.css", "/pic.png"} {
		if r := get(t, h, "GET", "example.org", p, map[string]string{"Accept-Encoding": "br"}); r.Header.Get("Content-Encoding") != "" {
			t.Fatalf("%s compressed", p)
		}
	}
	// A changed file is compressed anew once its last look is older than
	// the stat cache's validity, not served stale from the cache.
	js2 := []byte(strings.Repeat("const changed = true;\n", 300))
	write("app.js", js2)
	later := time.Now().Add(time.Minute)
	_ = os.Chtimes(filepath.Join(dir, "app.js"), later, later)
	changed := time.Now()
	for {
		r = get(t, h, "GET", "example.org", "/app.js", map[string]string{"Accept-Encoding": "zstd"})
		got := decode(t, "zstd", []byte(body(r)))
		if bytes.Equal(got, js2) {
			break
		}
		if !bytes.Equal(got, js) {
			t.Fatal("neither the old nor the new file")
		}
		if time.Since(changed) > statValid+2*time.Second {
			t.Fatalf("a changed file still served from the cache %v later", time.Since(changed))
		}
		time.Sleep(50 * time.Millisecond) // polling for the change, with the deadline above
	}
}

// TestCompressedFromMemory: once a compressed file is in the cache, it is
// served with its length and without opening the host's directory or the
// file while its last look is fresh (a renamed site still answers), and
// looked up again after that (the renamed site is gone: 404). Two hosts
// whose files have the same name, size and time get each their own.
func TestCompressedFromMemory(t *testing.T) {
	root := t.TempDir()
	a, b := []byte(strings.Repeat("a", 2000)), []byte(strings.Repeat("b", 2000))
	mtime := time.Now().Add(-time.Hour)
	for host, content := range map[string][]byte{"a.org": a, "b.org": b} {
		if err := os.MkdirAll(filepath.Join(root, host), 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, host, "index.html")
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	h, err := New(Config{Root: root, CompressionCache: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	h.stats.valid = 500 * time.Millisecond
	br := map[string]string{"Accept-Encoding": "br"}
	for host, want := range map[string][]byte{"a.org": a, "b.org": b, "a.org ": a} {
		host = strings.TrimSpace(host)
		r := get(t, h, "GET", host, "/", br)
		got := []byte(body(r))
		if !bytes.Equal(decode(t, "br", got), want) {
			t.Fatalf("%s: another host's file", host)
		}
		if cl := r.Header.Get("Content-Length"); cl != fmt.Sprint(len(got)) || len(r.TransferEncoding) > 0 {
			t.Fatalf("%s: Content-Length %q for %d bytes, transfer encoding %v", host, cl, len(got), r.TransferEncoding)
		}
	}
	if err := os.Rename(filepath.Join(root, "a.org"), filepath.Join(root, "gone")); err != nil {
		t.Fatal(err)
	}
	renamed := time.Now()
	r := get(t, h, "GET", "a.org", "/", br)
	if time.Since(renamed) < h.stats.valid && r.StatusCode != 200 {
		t.Fatalf("within the validity: %d, want 200 from memory", r.StatusCode)
	}
	for {
		r = get(t, h, "GET", "a.org", "/", br)
		if r.StatusCode == 404 {
			break
		}
		if time.Since(renamed) > h.stats.valid+2*time.Second {
			t.Fatalf("a renamed site still served %v later", time.Since(renamed))
		}
		time.Sleep(20 * time.Millisecond) // polling for the expiry, with the deadline above
	}
	if r := get(t, h, "HEAD", "b.org", "/", br); r.StatusCode != 200 || r.Header.Get("Content-Encoding") != "br" {
		t.Fatalf("HEAD: %d %q", r.StatusCode, r.Header.Get("Content-Encoding"))
	}
}

func TestCompressionCacheBound(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "example.org")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const limit = 4 << 10
	h, err := New(Config{Root: root, CompressionCache: limit})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for i := range 50 {
		// Text that compresses poorly: each file adds about 1.5 KiB.
		var b strings.Builder
		for j := range 400 {
			fmt.Fprintf(&b, "%x", (i*7919+j)*2654435761%4294967291)
		}
		name := fmt.Sprintf("f%d.txt", i)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		r := get(t, h, "GET", "example.org", "/"+name, map[string]string{"Accept-Encoding": "gzip"})
		if r.Header.Get("Content-Encoding") != "gzip" || string(decode(t, "gzip", []byte(body(r)))) != b.String() {
			t.Fatalf("%s: not served gzip-compressed and whole", name)
		}
		if used := h.zc.bytes(); used > limit || used == 0 {
			t.Fatalf("after %d files the cache holds %d bytes, bound %d", i+1, used, limit)
		}
	}
	if n, _ := New(Config{Root: root}); n.zc != nil {
		t.Fatal("CompressionCache 0 compresses")
	}
}

// TestCompressionSizeBounds: a text file of exactly compressMax bytes goes
// out compressed, one byte more as it is; compressMin likewise from below.
func TestCompressionSizeBounds(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "example.org")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	line := "a compressible line of text for the bounds\n"
	for name, size := range map[string]int{"max.txt": compressMax, "over.txt": compressMax + 1, "min.txt": compressMin, "under.txt": compressMin - 1} {
		b := []byte(strings.Repeat(line, size/len(line)+1))[:size]
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h, err := New(Config{Root: root, CompressionCache: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for name, want := range map[string]string{"max.txt": "gzip", "over.txt": "", "min.txt": "gzip", "under.txt": ""} {
		r := get(t, h, "GET", "example.org", "/"+name, map[string]string{"Accept-Encoding": "gzip"})
		if got := r.Header.Get("Content-Encoding"); got != want {
			t.Errorf("%s: Content-Encoding %q, want %q", name, got, want)
		}
		b := decode(t, want, []byte(body(r)))
		info, _ := os.Stat(filepath.Join(dir, name))
		if int64(len(b)) != info.Size() {
			t.Errorf("%s: %d bytes after decoding, the file has %d", name, len(b), info.Size())
		}
	}
}
