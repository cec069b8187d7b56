package worker

import (
	"io"
	"log/slog"
	"os"
	"strings"
)

// LevelTrace is the level of YGG_LOG_LEVEL=trace, below debug.
const LevelTrace = slog.LevelDebug - 4

// Logger returns a logger for a worker: text lines on stderr, which yggd
// writes to its own log with the worker's name and the time, at the level
// yggd passes in YGG_LOG_LEVEL (error, warn, info, debug or trace; info
// when unset or unknown). The lines carry no time of their own.
func Logger() *slog.Logger {
	return newLogger(os.Stderr, os.Getenv("YGG_LOG_LEVEL"))
}

func newLogger(w io.Writer, level string) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: parseLevel(level),
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
}

// parseLevel reads a level as yggd's log-level names them.
func parseLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "error":
		return slog.LevelError
	case "warn", "warning":
		return slog.LevelWarn
	case "debug":
		return slog.LevelDebug
	case "trace":
		return LevelTrace
	}
	return slog.LevelInfo
}
