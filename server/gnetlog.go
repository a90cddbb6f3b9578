package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
)

// gnetLogger routes gnet's own log lines into the server's slog.Logger, so
// that one --log-level and --log-format govern everything the process
// prints. gnet logs at info on start; it is demoted to debug here because
// the server logs its own "listening" line.
type gnetLogger struct{ log *slog.Logger }

func (g gnetLogger) logf(lvl slog.Level, format string, args []any) {
	if g.log.Enabled(context.Background(), lvl) {
		g.log.Log(context.Background(), lvl, fmt.Sprintf(format, args...), "component", "gnet")
	}
}

func (g gnetLogger) Debugf(format string, args ...any) { g.logf(slog.LevelDebug, format, args) }
func (g gnetLogger) Infof(format string, args ...any)  { g.logf(slog.LevelDebug, format, args) }
func (g gnetLogger) Warnf(format string, args ...any)  { g.logf(slog.LevelWarn, format, args) }
func (g gnetLogger) Errorf(format string, args ...any) { g.logf(slog.LevelError, format, args) }

// Fatalf logs and exits, as gnet's own loggers do; gnet calls it only when
// it cannot go on.
func (g gnetLogger) Fatalf(format string, args ...any) {
	g.logf(slog.LevelError, format, args)
	os.Exit(1)
}
