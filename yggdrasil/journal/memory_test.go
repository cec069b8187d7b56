package journal

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestMemory checks that a journal kept in memory answers as one on disk
// does, and writes nothing.
func TestMemory(t *testing.T) {
	dir := t.TempDir()
	opts := testOpts(t, nil)
	opts.Memory = true
	opts.MaxCount = 2
	j := MustOpen(t, dir, opts)
	ctx := context.Background()
	MustAdd(t, j, "pending", []byte("p1"))
	MustAdd(t, j, "done", []byte("d1"))
	if err := j.Handing(ctx, "done"); err != nil {
		t.Fatalf("Handing(done): %v", err)
	}
	if err := j.Done("done"); err != nil {
		t.Fatalf("Done(done): %v", err)
	}
	s1 := MustAppend(t, j, "out/a", []byte("answer 1"))
	s2 := MustAppend(t, j, "out/a", []byte("answer 2"))
	s3 := MustAppend(t, j, "out/a", []byte("answer 3")) // drops answer 1
	if err := j.Acked(s2); err != nil {
		t.Fatalf("Acked: %v", err)
	}

	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"inbound_payload", func(t *testing.T) {
			got, err := j.ReadInbound("pending")
			if err != nil || string(got) != "p1" {
				t.Errorf("ReadInbound(pending) = %q, %v; want p1", got, err)
			}
		}},
		{"done_not_readable", func(t *testing.T) {
			if _, err := j.ReadInbound("done"); !errors.Is(err, ErrNotFound) {
				t.Errorf("ReadInbound(done) error = %v, want ErrNotFound", err)
			}
		}},
		{"dedupe", func(t *testing.T) {
			for id, want := range map[string]bool{"pending": true, "done": true, "new": false} {
				dup, err := j.AddInbound(ctx, id, []byte("again"))
				if err != nil || dup != want {
					t.Errorf("AddInbound(%s) = %v, %v; want %v", id, dup, err, want)
				}
			}
		}},
		{"outbound_bounded", func(t *testing.T) {
			want := []Out{{s3, "out/a", []byte("answer 3")}}
			if diff := cmp.Diff(want, allOutbound(t, j)); diff != "" {
				t.Errorf("outbound (-want +got):\n%s", diff)
			}
			if s1 == 0 {
				t.Errorf("first seq is 0")
			}
		}},
		{"no_files", func(t *testing.T) {
			if segs := segments(t, dir); len(segs) != 0 {
				t.Errorf("segments = %v, want none", segs)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.check)
	}
	MustClose(t, j)
	if _, err := j.AddInbound(ctx, "late", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("AddInbound after Close: %v, want ErrClosed", err)
	}
}
