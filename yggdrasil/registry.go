package yggdrasil

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
)

// ErrDuplicateHandler is returned by Registry.Add when a live worker already
// serves the handler.
var ErrDuplicateHandler = errors.New("handler already registered")

// ErrHandlerClaimed is returned by Registry.Add when the handler belongs to
// another supervised worker: the first executable to register a handler
// keeps it, through its restarts, until its file is removed.
var ErrHandlerClaimed = errors.New("handler belongs to another worker")

// WorkerConn is the connection to one worker process: the ipc package
// implements it over gRPC.
type WorkerConn interface {
	// Send hands d to the worker and returns when the worker has taken it.
	Send(ctx context.Context, d *Data) error
	// Close releases the connection.
	Close() error
}

// Worker is a registered worker.
type Worker struct {
	Handler  string            // the directive it serves
	Pid      int               // the registering process, as the kernel says (SO_PEERCRED)
	Owner    string            // the supervised executable it belongs to ("" if unsupervised)
	Main     bool              // registered by the supervised process itself, not a descendant
	Detached bool              // content travels by URL, answers by HTTP POST
	Features map[string]string // published under dispatchers in the connection status
	Conn     WorkerConn
}

// Registry is the worker table: one live worker per handler. It is a map
// under a mutex rather than a go-memdb table: there is one key, lookups on
// the hot path must not allocate, and upstream's wedge came from a memdb
// write transaction left open.
type Registry struct {
	mu       sync.Mutex
	workers  map[string]*Worker
	waiting  map[string]*waiters // by handler, until it registers
	changed  func()              // called after every change, outside the lock
	handlers map[string]bool     // every handler ever registered
	claims   map[string]string   // handler → the supervised worker that owns it
	orphans  map[string]bool     // handlers whose registrant (a descendant) exited while its worker runs on
}

// waiters are the callers of Wait for one handler.
type waiters struct {
	ready chan struct{} // closed when the handler registers
	n     int
}

// NewRegistry returns an empty registry; changed (may be nil) is called
// after every registration and removal.
func NewRegistry(changed func()) *Registry {
	return &Registry{
		workers:  map[string]*Worker{},
		waiting:  map[string]*waiters{},
		handlers: map[string]bool{},
		claims:   map[string]string{},
		orphans:  map[string]bool{},
		changed:  changed,
	}
}

// Add registers w. It refuses a second live worker for the same handler,
// and a handler that another supervised worker owns.
func (r *Registry) Add(w *Worker) error {
	r.mu.Lock()
	if old, ok := r.workers[w.Handler]; ok {
		r.mu.Unlock()
		return fmt.Errorf("register %q from pid %d: %w (pid %d)", w.Handler, w.Pid, ErrDuplicateHandler, old.Pid)
	}
	if owner, ok := r.claims[w.Handler]; ok && owner != w.Owner {
		r.mu.Unlock()
		return fmt.Errorf("register %q from pid %d of %q: %w (%q)", w.Handler, w.Pid, w.Owner, ErrHandlerClaimed, owner)
	}
	if w.Owner != "" {
		r.claims[w.Handler] = w.Owner
	}
	r.workers[w.Handler] = w
	r.handlers[w.Handler] = true
	delete(r.orphans, w.Handler)
	if ws, ok := r.waiting[w.Handler]; ok {
		close(ws.ready)
		delete(r.waiting, w.Handler)
	}
	r.mu.Unlock()
	r.notify()
	return nil
}

// RemoveOwner removes every worker that belongs to the supervised executable
// owner (the process and its descendants are gone), closes their
// connections, and returns their handlers. Its handlers are expected back
// when it restarts: none of them counts as orphaned any more.
func (r *Registry) RemoveOwner(owner string) []string {
	r.mu.Lock()
	for h := range r.orphans {
		if r.claims[h] == owner {
			delete(r.orphans, h)
		}
	}
	r.mu.Unlock()
	return r.remove(func(w *Worker) bool { return w.Owner == owner })
}

// Remove removes w, if it is still registered (not a later registration of
// the same handler), and reports whether it was: its registering process
// has exited. If that process was a descendant of its worker, the handler
// is orphaned: nobody will register it again unless the worker restarts,
// so messages for it are not kept waiting.
func (r *Registry) Remove(w *Worker) bool {
	if len(r.remove(func(x *Worker) bool { return x == w })) == 0 {
		return false
	}
	if !w.Main {
		r.mu.Lock()
		if _, live := r.workers[w.Handler]; !live {
			r.orphans[w.Handler] = true
		}
		r.mu.Unlock()
	}
	return true
}

// Orphaned reports whether handler's registrant, a descendant of its
// worker, has exited while the worker runs on.
func (r *Registry) Orphaned(handler string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.orphans[handler]
}

// Release gives up the handlers that the supervised worker owner claimed:
// its file is gone, so another worker may serve them.
func (r *Registry) Release(owner string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for h, o := range r.claims {
		if o == owner {
			delete(r.claims, h)
		}
	}
}

func (r *Registry) remove(match func(*Worker) bool) []string {
	var gone []*Worker
	r.mu.Lock()
	for h, w := range r.workers {
		if match(w) {
			gone = append(gone, w)
			delete(r.workers, h)
		}
	}
	r.mu.Unlock()
	if len(gone) == 0 {
		return nil
	}
	handlers := make([]string, 0, len(gone))
	for _, w := range gone {
		handlers = append(handlers, w.Handler)
		if w.Conn != nil {
			w.Conn.Close()
		}
	}
	r.notify()
	return handlers
}

// Lookup returns the live worker for handler.
func (r *Registry) Lookup(handler string) (*Worker, bool) {
	r.mu.Lock()
	w, ok := r.workers[handler]
	r.mu.Unlock()
	return w, ok
}

// Known reports whether handler was ever registered in this run.
func (r *Registry) Known(handler string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.handlers[handler]
}

// Wait returns the worker for handler, waiting for it to register until ctx
// ends.
func (r *Registry) Wait(ctx context.Context, handler string) (*Worker, error) {
	r.mu.Lock()
	if w, ok := r.workers[handler]; ok {
		r.mu.Unlock()
		return w, nil
	}
	ws, ok := r.waiting[handler]
	if !ok {
		ws = &waiters{ready: make(chan struct{})}
		r.waiting[handler] = ws
	}
	ws.n++
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		if ws.n--; ws.n == 0 && r.waiting[handler] == ws {
			delete(r.waiting, handler) // nobody waits any more: keep nothing
		}
		r.mu.Unlock()
	}()
	select {
	case <-ws.ready:
		if w, ok := r.Lookup(handler); ok {
			return w, nil
		}
		return nil, fmt.Errorf("wait for worker %q: registered and gone again", handler)
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for worker %q: %w", handler, context.Cause(ctx))
	}
}

// Dispatchers returns the content.dispatchers map of the connection status:
// every live handler with its features (nil when it has none).
func (r *Registry) Dispatchers() map[string]map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]map[string]string, len(r.workers))
	for h, w := range r.workers {
		out[h] = maps.Clone(w.Features)
	}
	return out
}

// Close closes every worker connection and empties the table.
func (r *Registry) Close() {
	r.remove(func(*Worker) bool { return true })
}

func (r *Registry) notify() {
	if r.changed != nil {
		r.changed()
	}
}
