package www

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// ProxyRule is one -P/--proxy prefix=url of mles-rs: requests whose path
// is Prefix or below it go to Upstream, with the rest of the path after
// Prefix, the query, the method and the body.
type ProxyRule struct {
	Prefix   string
	Upstream *url.URL
}

// ParseProxy parses "prefix=http://upstream[/base]".
func ParseProxy(s string) (ProxyRule, error) {
	prefix, raw, ok := strings.Cut(s, "=")
	if !ok || !strings.HasPrefix(prefix, "/") {
		return ProxyRule{}, fmt.Errorf("proxy %q: want /prefix=http://upstream", s)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ProxyRule{}, fmt.Errorf("proxy %q: upstream must be an http:// or https:// URL", s)
	}
	return ProxyRule{Prefix: strings.TrimSuffix(prefix, "/"), Upstream: u}, nil
}

// under reports whether path is the rule's prefix or below it (at a
// segment boundary: /api matches /api and /api/x, not /apix), and returns
// the rest of the path, starting with "/".
func (r ProxyRule) under(path string) (string, bool) {
	if r.Prefix == "" {
		return path, true // "/" proxies everything
	}
	rest, ok := strings.CutPrefix(path, r.Prefix)
	if !ok || (rest != "" && rest[0] != '/') {
		return "", false
	}
	if rest == "" {
		rest = "/"
	}
	return rest, true
}

// Routes sends each request to the proxy with the longest matching prefix,
// else to site (nil: 404).
func Routes(rules []ProxyRule, site http.Handler) http.Handler {
	rules = slices.Clone(rules)
	slices.SortFunc(rules, func(a, b ProxyRule) int { return len(b.Prefix) - len(a.Prefix) })
	proxies := make([]*httputil.ReverseProxy, len(rules))
	for i, rule := range rules {
		proxies[i] = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				rest, _ := rule.under(pr.In.URL.Path)
				pr.Out.URL.Path, pr.Out.URL.RawPath = rest, ""
				pr.SetURL(rule.Upstream)
				pr.SetXForwarded()
			},
		}
	}
	if site == nil {
		site = http.NotFoundHandler()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i, rule := range rules {
			if _, ok := rule.under(r.URL.Path); ok {
				proxies[i].ServeHTTP(w, r)
				return
			}
		}
		site.ServeHTTP(w, r)
	})
}

// Redirect answers every request with 301 to the same host, path and query
// over https on port httpsPort (mles-rs -r/--redirect; mles-rs drops the
// query, this keeps it). A request without a usable Host gets 400.
func Redirect(httpsPort int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, ok := hostName(r)
		if !ok {
			http.Error(w, "missing or invalid Host", http.StatusBadRequest)
			return
		}
		if httpsPort != 443 {
			host = net.JoinHostPort(host, strconv.Itoa(httpsPort))
		} else if strings.Contains(host, ":") {
			host = "[" + host + "]" // an IPv6 literal
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusMovedPermanently)
	})
}

// OnlyHosts passes to h the requests whose Host (port stripped, case
// folded) is one of hosts, and answers the others 404: with -d, the HTTP
// side serves only the certificate's names, as mles-rs does. No hosts
// passes everything.
func OnlyHosts(hosts []string, h http.Handler) http.Handler {
	if len(hosts) == 0 {
		return h
	}
	allowed := make([]string, len(hosts))
	for i, d := range hosts {
		allowed[i] = strings.ToLower(strings.TrimSuffix(d, "."))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if host, ok := hostName(r); !ok || !slices.Contains(allowed, host) {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}
