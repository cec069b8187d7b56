package yggdrasil

import (
	"errors"
	"testing"
)

// TestRegistryClaims: a handler belongs to the first supervised worker that
// registers it, through its restarts, until that worker's file is gone; a
// registration is removed only by itself, not by a later one of the same
// handler.
func TestRegistryClaims(t *testing.T) {
	r := NewRegistry(nil)
	first := &Worker{Handler: "echo", Pid: 10, Owner: "echo-worker", Conn: &fakeConn{}}
	if err := r.Add(first); err != nil {
		t.Fatal(err)
	}
	if !r.Remove(first) {
		t.Fatal("Remove(first) = false, want true")
	}
	steps := []struct {
		name    string
		w       *Worker
		release string
		want    error
	}{
		{"other_worker_refused_while_owner_restarts", &Worker{Handler: "echo", Pid: 11, Owner: "other-worker"}, "", ErrHandlerClaimed},
		{"unsupervised_refused_too", &Worker{Handler: "echo", Pid: 12}, "", ErrHandlerClaimed},
		{"owner_takes_it_back", &Worker{Handler: "echo", Pid: 13, Owner: "echo-worker"}, "", nil},
		{"second_live_registration_refused", &Worker{Handler: "echo", Pid: 14, Owner: "echo-worker"}, "", ErrDuplicateHandler},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.w.Conn = &fakeConn{}
			if err := r.Add(st.w); !errors.Is(err, st.want) {
				t.Errorf("Add = %v, want %v", err, st.want)
			}
		})
	}
	live, _ := r.Lookup("echo")
	if r.Remove(first) {
		t.Error("Remove of a gone registration removed the live one")
	}
	if got, _ := r.Lookup("echo"); got != live {
		t.Error("the live registration changed")
	}
	r.Remove(live)
	r.Release("echo-worker")
	if err := r.Add(&Worker{Handler: "echo", Pid: 15, Owner: "other-worker", Conn: &fakeConn{}}); err != nil {
		t.Errorf("after Release, another worker: %v, want nil", err)
	}
}

// TestRegistryOrphans: a handler whose registrant, a worker's descendant,
// has exited is orphaned until it registers again or its worker exits.
func TestRegistryOrphans(t *testing.T) {
	r := NewRegistry(nil)
	child := &Worker{Handler: "child", Pid: 20, Owner: "parent-worker", Conn: &fakeConn{}}
	main := &Worker{Handler: "parent", Pid: 10, Owner: "parent-worker", Main: true, Conn: &fakeConn{}}
	r.Add(child)
	r.Add(main)
	r.Remove(child)
	r.Remove(main)
	if !r.Orphaned("child") || r.Orphaned("parent") {
		t.Errorf("orphaned: child %v parent %v; want true and false (the main process is restarted)", r.Orphaned("child"), r.Orphaned("parent"))
	}
	r.RemoveOwner("parent-worker") // the worker exits: it may register child again
	if r.Orphaned("child") {
		t.Error("child still orphaned after its worker exited")
	}
	r.Add(&Worker{Handler: "child", Pid: 21, Owner: "parent-worker", Conn: &fakeConn{}})
	if r.Orphaned("child") {
		t.Error("child orphaned while registered")
	}
}
