package store

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// Pebble's error and fatal lines may quote keys, which start with the channel name: the
// store's Error lines never carry them, its Debug lines do.
func TestEngineLoggerHidesKeys(t *testing.T) {
	const channel = "secret-channel"
	key := string(appendKey(nil, channel, 7, 8))
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		logs := new(logBuffer)
		l := engineLogger{slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level}))}
		l.Infof("[JOB %d] compacted %s", 1, "000005.sst")
		l.Errorf("background error: %s", fmt.Errorf("pebble: keys must be added in order: %q", key))
		func() {
			defer func() {
				p := recover()
				if _, ok := p.(engineFatal); !ok {
					t.Fatalf("Fatalf panicked with %v", p)
				}
				if text := fmt.Sprint(panicText(p)); strings.Contains(text, channel) {
					t.Fatalf("panicText = %q", text)
				}
			}()
			l.Fatalf("pebble: fatal commit error: %q", key)
		}()
		var errors, debug int
		for line := range strings.Lines(logs.String()) {
			switch {
			case strings.Contains(line, "level=ERROR"):
				errors++
				if strings.Contains(line, channel) || !strings.Contains(line, engineErrorLine) {
					t.Errorf("error line %q", line)
				}
			case strings.Contains(line, "level=DEBUG"):
				debug++
			default:
				t.Errorf("line %q", line)
			}
		}
		if errors != 2 {
			t.Errorf("level %v: %d error lines, want 2:\n%s", level, errors, logs)
		}
		if want := map[slog.Level]int{slog.LevelInfo: 0, slog.LevelDebug: 3}[level]; debug != want {
			t.Errorf("level %v: %d debug lines, want %d:\n%s", level, debug, want, logs)
		}
		if level == slog.LevelDebug && !strings.Contains(logs.String(), channel) {
			t.Errorf("the details are not at debug level:\n%s", logs)
		}
	}
}
