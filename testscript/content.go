package testscript

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	goscript "github.com/rogpeppe/go-internal/testscript"

	"github.com/ygglab/yggdrasil/fakes/content"
)

// contentState is the script's content server.
type contentState struct {
	server *content.Server
}

// contentCommands returns the commands of the fake content server (the
// HTTP side of detached content).
func contentCommands() map[string]command {
	return map[string]command{
		"content": {
			usage: "content [mode] [dir]",
			run:   cmdContent,
		},
		"content-mode": {
			usage: "content-mode mode",
			run:   cmdContentMode,
		},
		"content-posts": {
			usage:     "content-posts [-timeout d] n",
			negatable: true,
			run:       cmdContentPosts,
		},
	}
}

func contentOf(ts *goscript.TestScript) (*content.Server, error) {
	st := state(ts)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.content == nil {
		return nil, errors.New("no content server: run the content command first")
	}
	return st.content.server, nil
}

// cmdContent starts the content server in a mode (default ok) serving a
// directory of the archive (default none), and sets CONTENT_URL.
func cmdContent(ts *goscript.TestScript, args []string) error {
	if len(args) > 2 {
		return ErrUsage
	}
	mode := content.ModeOK
	if len(args) > 0 {
		if m, err := content.ParseMode(args[0]); err == nil {
			mode, args = m, args[1:]
		} else if len(args) == 2 {
			return fmt.Errorf("%w: %v", ErrUsage, err)
		}
	}
	s := &content.Server{}
	if len(args) == 1 {
		s.Dir = ts.MkAbs(args[0])
		if fi, err := os.Stat(s.Dir); err != nil || !fi.IsDir() {
			return fmt.Errorf("%w: %s is neither a mode (%v) nor a directory", ErrUsage, args[0], content.Modes)
		}
	}
	st := state(ts)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.content != nil {
		return errors.New("content server already started (change its mode with content-mode)")
	}
	logFile, err := os.Create(filepath.Join(ts.Getenv("WORK"), "content.log"))
	if err != nil {
		return fmt.Errorf("create content log: %w", err)
	}
	ts.Defer(func() { logFile.Close() })
	s.Logger = slog.New(slog.NewTextHandler(logFile, nil))
	s.SetMode(mode)
	if err := s.Start(); err != nil {
		return err
	}
	ts.Defer(func() { s.Close() })
	st.content = &contentState{server: s}
	ts.Setenv("CONTENT_URL", s.URL())
	return nil
}

func cmdContentMode(ts *goscript.TestScript, args []string) error {
	if len(args) != 1 {
		return ErrUsage
	}
	m, err := content.ParseMode(args[0])
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	s, err := contentOf(ts)
	if err != nil {
		return err
	}
	s.SetMode(m)
	return nil
}

// cmdContentPosts waits for n POSTs and prints them all.
func cmdContentPosts(ts *goscript.TestScript, args []string) error {
	fs := flag.NewFlagSet("content-posts", flag.ContinueOnError)
	timeout := timeoutFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return ErrUsage
	}
	n, err := strconv.Atoi(fs.Arg(0))
	if err != nil || n < 0 {
		return fmt.Errorf("%w: %q is not a count", ErrUsage, fs.Arg(0))
	}
	s, err := contentOf(ts)
	if err != nil {
		return err
	}
	d := timeoutOr(*timeout, waitTimeout)
	ctx, cancel := context.WithTimeout(scriptContext(ts), d)
	defer cancel()
	posts, err := s.AwaitPosts(ctx, n)
	for _, p := range posts {
		fmt.Fprint(ts.Stdout(), p.String())
	}
	if err != nil {
		return err
	}
	if len(posts) != n {
		return fmt.Errorf("%d posts, want %d", len(posts), n)
	}
	return nil
}
