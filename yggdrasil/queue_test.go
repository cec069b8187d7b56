package yggdrasil

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDedupeWindow(t *testing.T) {
	now := time.Unix(0, 0)
	d := NewDedupe(3, 10*time.Minute)
	d.now = func() time.Time { return now }
	steps := []struct {
		id      string
		advance time.Duration
		seen    bool
	}{
		{"a", 0, false},
		{"a", time.Minute, true},
		{"b", 0, false},
		{"c", 0, false},
		{"a", 0, true},  // still within size and age
		{"d", 0, false}, // size 3: a is forgotten
		{"a", 0, false},
		{"b", 11 * time.Minute, false}, // every id is older than the age
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		if got := d.Seen(s.id); got != s.seen {
			t.Fatalf("step %d: Seen(%q) = %v, want %v", i, s.id, got, s.seen)
		}
	}
	if d.Len() != 1 {
		t.Errorf("Len = %d after expiry, want 1", d.Len())
	}
}

// TestDedupeForget: a forgotten id is new again, and the eviction of its
// old entry does not forget it a second time.
func TestDedupeForget(t *testing.T) {
	d := NewDedupe(3, 10*time.Minute)
	for _, id := range []string{"a", "b"} {
		d.Seen(id)
	}
	d.Forget("a")
	if d.Seen("a") {
		t.Fatal("Seen(a) after Forget = true, want false")
	}
	d.Seen("c") // full: evicts the old entry of a
	if !d.Seen("a") {
		t.Error("Seen(a) = false after its old entry was evicted, want true (its new entry stays)")
	}
}

func TestOutboxDropsOldestPastLimits(t *testing.T) {
	tests := []struct {
		name   string
		limits OutboxLimits
		sizes  []int
		keep   []string
	}{
		{"count", OutboxLimits{Count: 2, Bytes: 1000}, []int{1, 1, 1, 1}, []string{"m2", "m3"}},
		{"bytes", OutboxLimits{Count: 100, Bytes: 10}, []int{4, 4, 4, 4}, []string{"m2", "m3"}},
		{"one_larger_than_limit_is_kept", OutboxLimits{Count: 100, Bytes: 10}, []int{4, 20}, []string{"m1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := NewOutbox(tc.limits, nil)
			for i, n := range tc.sizes {
				o.Put("t", fmt.Sprint("m", i), make([]byte, n))
			}
			var got []string
			for _, m := range o.items {
				got = append(got, m.id)
			}
			if diff := cmp.Diff(tc.keep, got); diff != "" {
				t.Errorf("kept (-want +got):\n%s", diff)
			}
			if want := uint64(len(tc.sizes) - len(tc.keep)); o.Dropped() != want {
				t.Errorf("Dropped = %d, want %d", o.Dropped(), want)
			}
		})
	}
}
