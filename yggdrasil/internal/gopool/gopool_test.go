package gopool

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestPool(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(2, time.Minute)
		defer p.Stop()

		// Go never waits for a busy goroutine: five blocked jobs run at once.
		release := make(chan struct{})
		var running atomic.Int32
		for range 5 {
			p.Go(func() { running.Add(1); <-release })
		}
		synctest.Wait()
		if n := running.Load(); n != 5 {
			t.Fatalf("%d jobs running, want 5: a job waited behind another", n)
		}
		close(release)
		synctest.Wait()
		// At most two of the five goroutines stay for the next job.
		if n := len(p.slots); n != 2 {
			t.Fatalf("%d goroutines waiting, want 2 (the bound)", n)
		}

		// A waiting goroutine takes the next job: none starts.
		ran := make(chan struct{})
		p.Go(func() { close(ran) })
		<-ran
		synctest.Wait()
		if n := len(p.slots); n != 2 {
			t.Fatalf("%d goroutines waiting after a job, want 2", n)
		}

		// Without jobs they go after the idle time, and none is left.
		time.Sleep(time.Minute - time.Second)
		synctest.Wait()
		if n := len(p.slots); n != 2 {
			t.Fatalf("%d goroutines waiting before the idle time, want 2", n)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n := len(p.slots); n != 0 {
			t.Fatalf("%d goroutines waiting after the idle time, want 0", n)
		}
	})
}

func TestPoolStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(4, time.Hour)
		p.Go(func() {}) // leaves one waiting
		release := make(chan struct{})
		var finished atomic.Bool
		p.Go(func() { <-release; finished.Store(true) })
		synctest.Wait()

		stopped := make(chan struct{})
		go func() { p.Stop(); close(stopped) }()
		synctest.Wait()
		select {
		case <-stopped:
			t.Fatal("Stop returned while a job was running")
		default:
		}
		close(release)
		<-stopped
		if !finished.Load() {
			t.Fatal("Stop returned before the running job finished")
		}
		if n := len(p.slots); n != 0 {
			t.Fatalf("%d goroutines waiting after Stop, want 0", n)
		}

		// After Stop a job still runs, on a goroutine of its own.
		ran := make(chan struct{})
		p.Go(func() { close(ran) })
		<-ran
		p.Stop() // idempotent
	})
}
