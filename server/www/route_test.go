package www

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// upstream records what reaches it and answers with a tag.
func upstream(t *testing.T, tag string) (*httptest.Server, chan string) {
	got := make(chan string, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- r.Method + " " + r.URL.RequestURI() + " " + string(body) + " xff=" + r.Header.Get("X-Forwarded-For")
		io.WriteString(w, tag)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func TestRoutes(t *testing.T) {
	api, apiGot := upstream(t, "api")
	deep, deepGot := upstream(t, "deep")
	var rules []ProxyRule
	for _, s := range []string{"/api=" + api.URL + "/base", "/api/deep/=" + deep.URL} {
		r, err := ParseProxy(s)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r)
	}
	site := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "site") })
	front := httptest.NewServer(Routes(rules, site))
	defer front.Close()

	for _, tc := range []struct {
		method, path, body, want string
		got                      chan string
		seen                     string
	}{
		{"POST", "/api/v1/items?q=a%20b&x=1", "payload", "api", apiGot, "POST /base/v1/items?q=a%20b&x=1 payload xff=127.0.0.1"},
		{"GET", "/api", "", "api", apiGot, "GET /base/ "},
		{"DELETE", "/api/deep/x?y=2", "", "deep", deepGot, "DELETE /x?y=2 "},
		{"GET", "/apix", "", "site", nil, ""},
		{"GET", "/index.html", "", "site", nil, ""},
	} {
		req, _ := http.NewRequest(tc.method, front.URL+tc.path, strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != tc.want {
			t.Fatalf("%s %s: answered by %q, want %q", tc.method, tc.path, b, tc.want)
		}
		if tc.got != nil {
			if seen := <-tc.got; !strings.HasPrefix(seen, tc.seen) {
				t.Fatalf("%s %s: upstream saw %q, want %q", tc.method, tc.path, seen, tc.seen)
			}
		}
	}

	for _, bad := range []string{"api=http://x", "/api", "/api=ftp://x", "/api=http://"} {
		if _, err := ParseProxy(bad); err == nil {
			t.Errorf("ParseProxy(%q) accepted", bad)
		}
	}
}

func TestRedirect(t *testing.T) {
	for _, tc := range []struct {
		port       int
		host, path string
		want       string
	}{
		{443, "example.org", "/a/b?c=d&e=%20", "https://example.org/a/b?c=d&e=%20"},
		{443, "Example.org:80", "/", "https://example.org/"},
		{8443, "127.0.0.1:8080", "/x?y", "https://127.0.0.1:8443/x?y"},
		{8443, "[::1]:80", "/", "https://[::1]:8443/"},
		{443, "[::1]", "/", "https://[::1]/"},
	} {
		req := httptest.NewRequest("GET", tc.path, nil)
		req.Host = tc.host
		w := httptest.NewRecorder()
		Redirect(tc.port).ServeHTTP(w, req)
		if w.Code != 301 || w.Header().Get("Location") != tc.want {
			t.Errorf("%s%s: %d %q, want 301 %q", tc.host, tc.path, w.Code, w.Header().Get("Location"), tc.want)
		}
	}
	req := httptest.NewRequest("GET", "/", nil)
	req.Host = ""
	w := httptest.NewRecorder()
	Redirect(443).ServeHTTP(w, req)
	if w.Code != 400 {
		t.Errorf("no Host: %d, want 400", w.Code)
	}
}

func TestOnlyHosts(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	h := OnlyHosts([]string{"Example.org."}, ok)
	for host, want := range map[string]int{"example.org": 200, "EXAMPLE.org:443": 200, "other.org": 404, "": 404, "example.org.evil": 404} {
		req := httptest.NewRequest("GET", "/", nil)
		req.Host = host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != want {
			t.Errorf("Host %q: %d, want %d", host, w.Code, want)
		}
	}
	if got := OnlyHosts(nil, ok); fmt.Sprintf("%p", got) != fmt.Sprintf("%p", ok) {
		t.Error("OnlyHosts without hosts wraps the handler")
	}
}
