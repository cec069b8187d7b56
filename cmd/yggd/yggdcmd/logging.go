package yggdcmd

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// newLogger returns yggd's logger, writing text lines to w at level and
// above. When w is the journal (journal true), each line starts with its
// syslog priority, "<3>" to "<7>", which journald strips and records as the
// entry's priority, and carries no time= attribute, since journald stamps
// every entry itself. Otherwise the lines are slog's text format as they
// are.
func newLogger(w io.Writer, journal bool, level *slog.LevelVar) *slog.Logger {
	if !journal {
		return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
	}
	out := &journalOut{w: w}
	return slog.New(&journalHandler{out: out, text: slog.NewTextHandler(&out.buf, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})})
}

// priority is the syslog priority of a level, as sd-daemon(3) prefixes
// it: error 3, warn 4, info 6, debug and trace 7.
func priority(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "<3>"
	case l >= slog.LevelWarn:
		return "<4>"
	case l >= slog.LevelInfo:
		return "<6>"
	}
	return "<7>"
}

// journalOut is where every journalHandler derived from one logger writes:
// the text handler formats a record into buf, and the line goes to w with
// its priority in front, under mu.
type journalOut struct {
	mu  sync.Mutex
	buf bytes.Buffer
	w   io.Writer
}

// journalHandler is slog's text handler with the syslog priority in front of
// each line.
type journalHandler struct {
	out  *journalOut
	text slog.Handler // writes into out.buf
}

func (h *journalHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.text.Enabled(ctx, l)
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.out.buf.Reset()
	h.out.buf.WriteString(priority(r.Level))
	if err := h.text.Handle(ctx, r); err != nil {
		return err
	}
	_, err := h.out.w.Write(h.out.buf.Bytes())
	return err
}

func (h *journalHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &journalHandler{out: h.out, text: h.text.WithAttrs(attrs)}
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	return &journalHandler{out: h.out, text: h.text.WithGroup(name)}
}

// stderrIsJournal reports whether yggd's stderr is connected to the
// journal: systemd sets JOURNAL_STREAM to the device and inode of the
// stream it gives the service, and they must be those of fd 2 (a child
// whose stderr was redirected inherits the variable, not the stream).
func stderrIsJournal() bool {
	return isJournalStream(os.Getenv("JOURNAL_STREAM"), int(os.Stderr.Fd()))
}

// isJournalStream reports whether stream, JOURNAL_STREAM's "<dev>:<inode>",
// names the file open as fd.
func isJournalStream(stream string, fd int) bool {
	d, i, ok := strings.Cut(stream, ":")
	if !ok {
		return false
	}
	dev, err := strconv.ParseUint(d, 10, 64)
	if err != nil {
		return false
	}
	ino, err := strconv.ParseUint(i, 10, 64)
	if err != nil {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false
	}
	return uint64(st.Dev) == dev && uint64(st.Ino) == ino
}
