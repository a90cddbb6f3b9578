package main

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"
)

// Log lines are rate-limited per message (SPEC 5): a client that makes the
// server log something on every connection (a bad ClientHello, a refused
// header) cannot fill the disk. Each message (the record's msg, a constant
// in the code, so a bounded set) may log logBurst lines at once and
// logRate a second after that; what is suppressed is counted and said in
// one line per message logSummary later.
const (
	logRate    = 20
	logBurst   = 100
	logSummary = 10 * time.Second
)

// limitHandler wraps a slog.Handler with the limit. Handlers made by
// WithAttrs and WithGroup share their parent's limit.
type limitHandler struct {
	next slog.Handler
	lim  *logLimit
}

// logLimit is the limit's state: a token bucket per message and the counts
// of suppressed lines not reported yet.
type logLimit struct {
	out slog.Handler // the unwrapped handler, for the summary lines

	mu         sync.Mutex
	buckets    map[string]*logBucket
	suppressed map[string]int
	timer      *time.Timer // the pending summary; nil when none is due
}

type logBucket struct {
	tokens float64
	at     time.Time
}

func newLimitHandler(h slog.Handler) *limitHandler {
	return &limitHandler{next: h, lim: &logLimit{out: h, buckets: map[string]*logBucket{}, suppressed: map[string]int{}}}
}

func (h *limitHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *limitHandler) Handle(ctx context.Context, r slog.Record) error {
	if !h.lim.allow(r.Message, r.Time) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *limitHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &limitHandler{next: h.next.WithAttrs(as), lim: h.lim}
}

func (h *limitHandler) WithGroup(name string) slog.Handler {
	return &limitHandler{next: h.next.WithGroup(name), lim: h.lim}
}

// allow takes a token of msg's bucket at now, or counts the line as
// suppressed and makes sure a summary is due.
func (l *logLimit) allow(msg string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[msg]
	if b == nil {
		b = &logBucket{tokens: logBurst, at: now}
		l.buckets[msg] = b
	}
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(logBurst, b.tokens+d.Seconds()*logRate)
		b.at = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	l.suppressed[msg]++
	if l.timer == nil {
		l.timer = time.AfterFunc(logSummary, l.report)
	}
	return false
}

// report logs one line per message with suppressed lines, and how many.
func (l *logLimit) report() {
	l.mu.Lock()
	counts := l.suppressed
	l.suppressed = map[string]int{}
	l.timer = nil
	l.mu.Unlock()
	msgs := make([]string, 0, len(counts))
	for m := range counts {
		msgs = append(msgs, m)
	}
	sort.Strings(msgs)
	for _, m := range msgs {
		r := slog.NewRecord(time.Now(), slog.LevelWarn, "log lines suppressed", 0)
		r.AddAttrs(slog.String("message", m), slog.Int("lines", counts[m]), slog.Duration("within", logSummary))
		_ = l.out.Handle(context.Background(), r)
	}
}

// flush reports what is suppressed now, at exit.
func (l *logLimit) flush() {
	l.mu.Lock()
	t := l.timer
	l.mu.Unlock()
	if t != nil && t.Stop() {
		l.report()
	}
}
