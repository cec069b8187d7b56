// Package gopool runs short jobs on goroutines that are kept for the next
// job for a while instead of exiting. A goroutine that ran a job through
// gRPC or paho has grown its stack; a fresh goroutine per job grows it
// again every time (runtime.copystack was 6 % of yggd's CPU at 64
// messages in flight, from its per-message delivery goroutines). A pool
// keeps no goroutine when there is no work: each one left waiting exits
// after Idle without a job, so an idle yggd holds none.
package gopool

import (
	"sync"
	"time"
)

// Pool runs jobs on kept goroutines, or on new ones when none is waiting:
// Go never blocks and never queues, so a job never waits behind another.
// The zero Pool is not usable: use New.
type Pool struct {
	work chan func() // unbuffered: a send succeeds only to a waiting goroutine
	quit chan struct{}
	idle time.Duration
	// slots bounds the goroutines waiting for a job: one that finds it
	// full exits at once.
	slots chan struct{}

	mu      sync.Mutex // orders wg.Add against Stop's wg.Wait
	stopped bool
	wg      sync.WaitGroup
}

// New returns a pool that keeps at most max goroutines waiting, each for
// at most idle.
func New(max int, idle time.Duration) *Pool {
	return &Pool{work: make(chan func()), quit: make(chan struct{}), idle: idle,
		slots: make(chan struct{}, max)}
}

// Go runs f on a waiting goroutine, or on a new one. After Stop, f runs
// on a goroutine of its own that the pool does not wait for: its caller
// must own it (yggd's jobs are counted by their callers as well).
func (p *Pool) Go(f func()) {
	select {
	case p.work <- f:
		return
	default:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		go f()
		return
	}
	p.wg.Go(func() { p.run(f) })
}

// run runs f, then waits for the next job while there is a free slot,
// until idle passes without one or the pool stops.
func (p *Pool) run(f func()) {
	var t *time.Timer
	for {
		f()
		select {
		case p.slots <- struct{}{}:
		default:
			return // enough goroutines wait already
		}
		if t == nil {
			t = time.NewTimer(p.idle)
		} else {
			t.Reset(p.idle)
		}
		select {
		case f = <-p.work:
			<-p.slots
		case <-t.C:
			<-p.slots
			return
		case <-p.quit:
			<-p.slots
			return
		}
	}
}

// Stop makes every waiting goroutine exit, and the others once their job
// is done, and waits for them all. It is idempotent.
func (p *Pool) Stop() {
	p.mu.Lock()
	if !p.stopped {
		p.stopped = true
		close(p.quit)
	}
	p.mu.Unlock()
	p.wg.Wait()
}
