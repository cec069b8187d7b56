package yggcmd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// isTerminal reports whether v is an *os.File open on a terminal.
func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progress shows that a step is under way. On a terminal it is a spinner
// that the final line replaces; elsewhere it is one plain line when the step
// starts and one when it ends, with no control characters.
type progress struct {
	w    io.Writer
	tty  bool
	msg  string
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex // serialises the spinner's writes and the final line
}

// step starts showing msg.
func (a *app) step(msg string) *progress {
	p := &progress{w: a.stdout, tty: isTerminal(a.stdout), msg: msg}
	if !p.tty {
		fmt.Fprintln(p.w, msg+"...")
		return p
	}
	p.stop = make(chan struct{})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		frames := `|/-\`
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			p.mu.Lock()
			fmt.Fprintf(p.w, "\r\033[K%c %s...", frames[i%len(frames)], p.msg)
			p.mu.Unlock()
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

// done ends the step with a final line; ok chooses the mark on a terminal.
func (p *progress) done(ok bool, final string) {
	if p.stop != nil {
		close(p.stop)
		p.wg.Wait()
		p.stop = nil
	}
	if !p.tty {
		if final != "" {
			fmt.Fprintln(p.w, final)
		}
		return
	}
	mark := "\033[32m✓\033[0m"
	if !ok {
		mark = "\033[31m✗\033[0m"
	}
	if final == "" {
		final = p.msg
	}
	fmt.Fprintf(p.w, "\r\033[K%s %s\n", mark, final)
}

// prompter reads answers from a terminal on stdin.
type prompter struct {
	in  *bufio.Reader
	f   *os.File
	out io.Writer
}

func (a *app) prompter() (*prompter, bool) {
	f, ok := a.stdin.(*os.File)
	if !ok || !isTerminal(f) {
		return nil, false
	}
	return &prompter{in: bufio.NewReader(f), f: f, out: a.stdout}, true
}

// ask prints label and reads one line.
func (p *prompter) ask(label string) (string, error) {
	fmt.Fprint(p.out, label)
	line, err := p.in.ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", fmt.Errorf("read %s: %w", strings.TrimSuffix(strings.ToLower(label), ": "), err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// askSecret is ask with the terminal's echo turned off.
func (p *prompter) askSecret(label string) (string, error) {
	fd := int(p.f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", fmt.Errorf("turn off echo: %w", err)
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return "", fmt.Errorf("turn off echo: %w", err)
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	s, err := p.ask(label)
	fmt.Fprintln(p.out) // the user's Enter was not echoed
	return s, err
}
