package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer for a handler and a test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLogLimit: a flood of one message logs its burst and then logRate a
// second (by the records' times), another message is not held back by it,
// the suppressed lines are counted exactly in the summary, and handlers
// derived with attributes share the limit.
func TestLogLimit(t *testing.T) {
	var out syncBuffer
	h := newLimitHandler(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	log := slog.New(h).With("component", "test")
	start := time.Now()
	const flood = 5000
	// The flood spans 2 s of record time: logBurst + 2 s x logRate pass.
	for i := range flood {
		r := slog.NewRecord(start.Add(time.Duration(i)*2*time.Second/flood), slog.LevelInfo, "tls handshake failed", 0)
		_ = log.Handler().Handle(t.Context(), r)
	}
	log.Warn("something else")
	passed := strings.Count(out.String(), `msg="tls handshake failed"`)
	want := logBurst + 2*logRate
	if passed < want-1 || passed > want+1 {
		t.Fatalf("%d of %d flood lines logged, want about %d", passed, flood, want)
	}
	if !strings.Contains(out.String(), `msg="something else"`) {
		t.Fatal("another message was suppressed with the flood")
	}
	h.lim.flush() // the summary now instead of logSummary later
	summary := fmt.Sprintf(`msg="log lines suppressed" message="tls handshake failed" lines=%d`, flood-passed)
	if !strings.Contains(out.String(), summary) {
		t.Fatalf("no %q in:\n%s", summary, out.String()[max(0, len(out.String())-600):])
	}
}
