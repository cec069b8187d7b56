package yggdrasil

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ygglab/yggdrasil/yggdrasil/journal"
)

// TestOutboxDropsOldestPastLimits: past the journal's bounds the oldest
// answers go, and one answer alone is kept whatever its size.
func TestOutboxDropsOldestPastLimits(t *testing.T) {
	tests := []struct {
		name   string
		limits journal.Options
		sizes  []int
		keep   []string
	}{
		{"count", journal.Options{MaxCount: 2, MaxBytes: 1000}, []int{2, 2, 2, 2}, []string{"m2", "m3"}},
		{"bytes", journal.Options{MaxCount: 100, MaxBytes: 10}, []int{4, 4, 4, 4}, []string{"m2", "m3"}},
		{"one_larger_than_limit_is_kept", journal.Options{MaxCount: 100, MaxBytes: 10}, []int{4, 20}, []string{"m1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := NewOutbox(testJournal(t, tc.limits), nil)
			for i, n := range tc.sizes {
				name := fmt.Sprint("m", i)
				p := name + strings.Repeat(".", n-len(name))
				if err := o.Put(context.Background(), "t", name, "", journal.IfHanding, []byte(p)); err != nil {
					t.Fatal(err)
				}
			}
			var got []string
			for m, ok := o.head(); ok; m, ok = o.after(m.seq) {
				got = append(got, strings.TrimRight(string(m.payload), "."))
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
