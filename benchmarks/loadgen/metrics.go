package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultMetrics are the metrics -admin-url records by default: the history
// store's writer (persist, persistpub), the peer sessions and their traffic
// (peered), and the server's own message counts to hold them against.
const DefaultMetrics = "mles_messages_in_total,mles_deliveries_total," +
	"mles_history_store_written_total,mles_history_store_dropped_total,mles_history_store_queued,mles_history_store_behind,mles_history_store_disk_bytes," +
	"mles_peer_sessions,mles_peer_messages_in_total,mles_peer_messages_out_total,mles_peer_duplicates_total," +
	"mles_nats_connected,mles_nats_through_stream,mles_nats_queued,mles_nats_consumers,mles_nats_published_total,mles_nats_acked_total," +
	"mles_nats_failed_total,mles_nats_received_total,mles_nats_local_first_total,mles_nats_queue_full_total,mles_nats_too_large_total"

// metricPeerSessions is the gauge -peer-sessions waits for.
const metricPeerSessions = "mles_peer_sessions"

// parseMetrics reads Prometheus text exposition (version 0.0.4) and returns
// the value of each of names that occurs; the samples of one name (its
// label sets) are summed. Comments, other metrics and lines it cannot read
// are skipped.
func parseMetrics(body []byte, names []string) map[string]float64 {
	out := map[string]float64{}
	for line := range bytes.SplitSeq(body, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		end := bytes.IndexAny(line, "{ \t")
		if end <= 0 {
			continue
		}
		name := line[:end]
		rest := line[end:]
		if rest[0] == '{' {
			le := labelsEnd(rest)
			if le < 0 {
				continue
			}
			rest = rest[le+1:]
		}
		fields := bytes.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		for _, n := range names {
			if string(name) != n {
				continue
			}
			v, err := strconv.ParseFloat(string(fields[0]), 64)
			if err != nil {
				break
			}
			out[n] += v
			break
		}
	}
	return out
}

// labelsEnd returns the index of the '}' that closes the label set at
// b[0] == '{', skipping quoted values (with backslash escapes), or -1.
func labelsEnd(b []byte) int {
	quoted := false
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == '}':
			return i
		}
	}
	return -1
}

// adminClient reads the servers' /metrics; not on any hot path.
var adminClient = &http.Client{Timeout: 5 * time.Second}

// scrape reads one server's metrics.
func scrape(ctx context.Context, url string, names []string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := adminClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: status %d", url, resp.StatusCode)
	}
	return parseMetrics(body, names), nil
}

// scrapeAll reads every server's metrics at once; a server that could not
// be read has a nil map, and the first error is returned.
func scrapeAll(ctx context.Context, urls, names []string) ([]map[string]float64, error) {
	out := make([]map[string]float64, len(urls))
	errs := make([]error, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = scrape(ctx, u, names)
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// awaitPeerSessions polls every server until each reports at least want
// peer sessions, for at most limit; it returns how long that took.
func awaitPeerSessions(ctx context.Context, urls []string, want int, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	names := []string{metricPeerSessions}
	for {
		ms, err := scrapeAll(ctx, urls, names)
		if err == nil && peerSessionsUp(ms, want) {
			return time.Since(start), nil
		}
		if time.Since(start) > limit || ctx.Err() != nil {
			if err == nil {
				err = fmt.Errorf("%s per server %v, want at least %d", metricPeerSessions, sessionCounts(ms), want)
			}
			return time.Since(start), fmt.Errorf("peer sessions not up within %v: %w", limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// awaitMetrics polls every server until each reports every condition's
// metric at least its minimum, for at most limit; it returns how long that
// took. The error names each condition's value per server (-1: missing).
func awaitMetrics(ctx context.Context, urls []string, conds []awaitCond, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	names := make([]string, len(conds))
	for i, c := range conds {
		names[i] = c.name
	}
	for {
		ms, err := scrapeAll(ctx, urls, names)
		if err == nil && metricsUp(ms, conds) {
			return time.Since(start), nil
		}
		if time.Since(start) > limit || ctx.Err() != nil {
			if err == nil {
				var parts []string
				for _, c := range conds {
					parts = append(parts, fmt.Sprintf("%s per server %v, want at least %g", c.name, metricCounts(ms, c.name), c.min))
				}
				err = errors.New(strings.Join(parts, "; "))
			}
			return time.Since(start), fmt.Errorf("-await not met within %v: %w", limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metricsUp reports whether every scrape meets every condition.
func metricsUp(ms []map[string]float64, conds []awaitCond) bool {
	for _, m := range ms {
		if m == nil {
			return false
		}
		for _, c := range conds {
			if v, ok := m[c.name]; !ok || v < c.min {
				return false
			}
		}
	}
	return true
}

// metricCounts is one metric per scrape, -1 where it is missing.
func metricCounts(ms []map[string]float64, name string) []float64 {
	out := make([]float64, len(ms))
	for i, m := range ms {
		out[i] = -1
		if v, ok := m[name]; ok {
			out[i] = v
		}
	}
	return out
}

// peerSessionsUp reports whether every scrape shows at least want sessions.
func peerSessionsUp(ms []map[string]float64, want int) bool {
	for _, m := range ms {
		if m == nil || m[metricPeerSessions] < float64(want) {
			return false
		}
	}
	return true
}

func sessionCounts(ms []map[string]float64) []float64 { return metricCounts(ms, metricPeerSessions) }

// scraper reads every -admin-url server's /metrics every -scrape-every
// from the schedule's start to the window's end, as a Prometheus server
// would, so that what a scrape costs the server is in the window's CPU
// and latency. Its scrapes fall half an interval off the schedule's
// start, so none coincides with the reads at the window's edges (with a
// whole number of intervals in the warm-up and the window, as 3 s and
// 10 s at 1 s). Not on any hot path: one goroutine, one request at a time.
type scraper struct {
	done chan struct{}

	// Written by the scraper goroutine, read after done is closed.
	ok, failed, inWindow int
	first                error
	ms                   []float64 // each answered scrape's time, request to body read
}

// startScraper starts the scrapes; wait ends them and returns the counts.
func startScraper(ctx context.Context, o *Options, clk clock, t0, winStart, winEnd int64) *scraper {
	s := &scraper{done: make(chan struct{})}
	every := int64(o.ScrapeEvery)
	go func() {
		defer close(s.done)
		for t := t0 + every/2; t < winEnd; t += every {
			sleepUntil(ctx, clk, t)
			if ctx.Err() != nil {
				return
			}
			// A scrape slower than the interval does not make the next
			// ones bunch up: the schedule goes on from now.
			if now := clk.now(); now > t+every {
				t = now
			}
			for _, u := range o.AdminURLs {
				start := clk.now()
				m, err := scrape(ctx, u, o.Metrics)
				if err == nil && len(m) == 0 {
					err = fmt.Errorf("%s: none of -metrics in the response", u)
				}
				if start >= winStart && start < winEnd {
					s.inWindow++
				}
				if err != nil {
					s.failed++
					if s.first == nil {
						s.first = err
					}
					continue
				}
				s.ok++
				s.ms = append(s.ms, float64(clk.now()-start)/1e6)
			}
		}
	}()
	return s
}

// wait waits for the scrapes to end (the window's end, or ctx) and records
// them in res.
func (s *scraper) wait(res *Result, every time.Duration) {
	<-s.done
	res.ScrapeEveryS = every.Seconds()
	res.Scrapes, res.ScrapesFailed, res.ScrapesInWindow = s.ok, s.failed, s.inWindow
	if s.first != nil {
		res.ScrapeFirstError = s.first.Error()
	}
	if len(s.ms) > 0 {
		v := slices.Clone(s.ms)
		slices.Sort(v)
		res.ScrapeP50Ms = v[len(v)/2]
		res.ScrapeMaxMs = v[len(v)-1]
	}
}
