package journal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	opts := testOpts(t, nil)
	opts.Now = clock.Now
	j := MustOpen(t, dir, opts)
	ctx := context.Background()
	MustAdd(t, j, "pending", []byte("p1"))
	MustAdd(t, j, "handing", []byte("h1"))
	MustAdd(t, j, "done", []byte("d1"))
	MustAdd(t, j, "forgotten", []byte("f1"))
	MustAdd(t, j, "pending2", []byte("p2"))
	for _, id := range []string{"handing", "done", "forgotten"} {
		if err := j.Handing(ctx, id); err != nil {
			t.Fatalf("Handing(%s): %v", id, err)
		}
	}
	for _, id := range []string{"done", "forgotten"} {
		if err := j.Done(id); err != nil {
			t.Fatalf("Done(%s): %v", id, err)
		}
	}
	j.Forget("forgotten")
	s1 := MustAppend(t, j, "out/a", []byte("answer 1"))
	s2 := MustAppend(t, j, "out/b", []byte("answer 2"))
	s3 := MustAppend(t, j, "out/a", []byte("answer 3"))
	if err := j.Acked(s2); err != nil {
		t.Fatalf("Acked: %v", err)
	}
	MustClose(t, j)

	j = MustOpen(t, dir, opts)
	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"recovery", func(t *testing.T) {
			want := Recovery{Pending: []string{"pending", "pending2"}, Handing: []string{"handing"}, Outbound: 2}
			if diff := cmp.Diff(want, j.Recovered()); diff != "" {
				t.Errorf("Recovered() (-want +got):\n%s", diff)
			}
		}},
		{"inbound_payloads", func(t *testing.T) {
			for id, want := range map[string]string{"pending": "p1", "handing": "h1", "pending2": "p2"} {
				got, err := j.ReadInbound(id)
				if err != nil || string(got) != want {
					t.Errorf("ReadInbound(%s) = %q, %v; want %q", id, got, err, want)
				}
			}
		}},
		{"done_not_readable", func(t *testing.T) {
			if _, err := j.ReadInbound("done"); !errors.Is(err, ErrNotFound) {
				t.Errorf("ReadInbound(done) error = %v, want ErrNotFound", err)
			}
		}},
		{"outbound_in_order", func(t *testing.T) {
			want := []Out{{s1, "out/a", []byte("answer 1")}, {s3, "out/a", []byte("answer 3")}}
			if diff := cmp.Diff(want, allOutbound(t, j)); diff != "" {
				t.Errorf("outbound (-want +got):\n%s", diff)
			}
		}},
		{"dedupe", func(t *testing.T) {
			for id, want := range map[string]bool{"pending": true, "handing": true, "done": true, "forgotten": false} {
				dup, err := j.AddInbound(ctx, id, []byte("again"))
				if err != nil || dup != want {
					t.Errorf("AddInbound(%s) = %v, %v; want %v", id, dup, err, want)
				}
			}
		}},
		{"seq_continues", func(t *testing.T) {
			if got := MustAppend(t, j, "out/c", []byte("answer 4")); got != s3+1 {
				t.Errorf("seq = %d, want %d", got, s3+1)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.check)
	}
}

func TestConcurrentWriters(t *testing.T) {
	tests := []struct {
		name    string
		segment int64
	}{
		{"one_segment", 0},
		{"rolling", 8 << 10}, // rolls race with writers
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testConcurrentWriters(t, tt.segment) })
	}
}

func testConcurrentWriters(t *testing.T, segment int64) {
	dir := t.TempDir()
	opts := testOpts(t, nil)
	opts.SegmentSize = segment
	j := MustOpen(t, dir, opts)
	const writers, each = 64, 20
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("m-%d-%d", w, i)
				if _, err := j.AddInbound(ctx, id, payload(id, 100)); err != nil {
					errs <- err
					return
				}
				// Every third is handed, every ninth done too.
				if i%3 == 0 {
					if err := j.Handing(ctx, id); err != nil {
						errs <- err
						return
					}
					if i%9 == 0 {
						if err := j.Done(id); err != nil {
							errs <- err
							return
						}
					}
				}
				if _, _, err := j.AppendOutbound(ctx, "out/"+id, payload(id, 100)); err != nil {
					errs <- err
					return
				}
				// Churn: answers acknowledged at once, so that the
				// segment fills with dead records and rolls.
				for range 5 {
					seq, _, err := j.AppendOutbound(ctx, "churn", payload(id, 100))
					if err == nil {
						err = j.Acked(seq)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if segment > 0 && j.Stats().Segment < 3 {
		t.Errorf("Segment = %d, want several rolls", j.Stats().Segment)
	}
	MustClose(t, j)

	j = MustOpen(t, dir, opts)
	rec := j.Recovered()
	if got, want := rec.Outbound, writers*each; got != want {
		t.Errorf("Outbound = %d, want %d", got, want)
	}
	var wantPending, wantHanding int
	for w := range writers {
		for i := range each {
			id := fmt.Sprintf("m-%d-%d", w, i)
			switch {
			case i%9 == 0:
				if dup, err := j.AddInbound(ctx, id, nil); !dup || err != nil {
					t.Errorf("AddInbound(%s) of a done id = %v, %v; want dup", id, dup, err)
				}
				continue
			case i%3 == 0:
				wantHanding++
			default:
				wantPending++
			}
			got, err := j.ReadInbound(id)
			if err != nil || string(got) != string(payload(id, 100)) {
				t.Errorf("ReadInbound(%s) = %q, %v", id, got, err)
			}
		}
	}
	if len(rec.Pending) != wantPending || len(rec.Handing) != wantHanding {
		t.Errorf("recovered %d pending, %d handing; want %d, %d", len(rec.Pending), len(rec.Handing), wantPending, wantHanding)
	}
	// Each writer's answers come back in the order it appended them.
	next := map[string]int{}
	for _, o := range allOutbound(t, j) {
		var w, i int
		if _, err := fmt.Sscanf(o.Topic, "out/m-%d-%d", &w, &i); err != nil {
			t.Fatalf("topic %q: %v", o.Topic, err)
		}
		key := fmt.Sprint(w)
		if i != next[key] {
			t.Errorf("writer %d: answer %d came after %d", w, i, next[key]-1)
		}
		next[key] = i + 1
		if want := payload(fmt.Sprintf("m-%d-%d", w, i), 100); string(o.Payload) != string(want) {
			t.Errorf("answer %s payload = %q", o.Topic, o.Payload)
		}
	}
}

func TestTornTail(t *testing.T) {
	// Base: two intact records, then the last one that will be damaged.
	base := t.TempDir()
	j := MustOpen(t, base, testOpts(t, nil))
	MustAdd(t, j, "first", []byte("first payload"))
	MustAppend(t, j, "out/x", []byte("an answer"))
	start := j.Stats().SegmentBytes
	MustAdd(t, j, "last", payload("last", 100))
	end := j.Stats().SegmentBytes
	MustClose(t, j)
	seg := segments(t, base)[0]

	type damage struct {
		name string
		at   int64
		cut  bool // truncate at at; else flip the byte at at
	}
	var cases []damage
	for at := start + 1; at < end; at++ {
		cases = append(cases, damage{fmt.Sprintf("truncate_at_%d", at-start), at, true})
	}
	for at := start; at < end; at++ {
		cases = append(cases, damage{fmt.Sprintf("flip_at_%d", at-start), at, false})
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyDir(t, base)
			path := filepath.Join(dir, seg)
			if tt.cut {
				if err := os.Truncate(path, tt.at); err != nil {
					t.Fatal(err)
				}
			} else {
				b, _ := os.ReadFile(path)
				b[tt.at] ^= 0x40
				if err := os.WriteFile(path, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var lb logBuf
			j := MustOpen(t, dir, testOpts(t, &lb))
			checkTornTail(t, j, &lb, path, start, end)
			// Appending afterwards works and survives a reopen.
			MustAdd(t, j, "after", []byte("after"))
			MustClose(t, j)
			j = MustOpen(t, dir, testOpts(t, nil))
			if diff := cmp.Diff([]string{"first", "after"}, j.Recovered().Pending); diff != "" {
				t.Errorf("after append and reopen, pending (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("corrupt_middle", func(t *testing.T) {
		dir := copyDir(t, base)
		path := filepath.Join(dir, seg)
		// Damage the answer's record: the inbound "first" before it is
		// kept, the answer and everything after it are dropped.
		mid := start - int64(len("an answer")) - 1
		b, _ := os.ReadFile(path)
		b[mid] ^= 0xff
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		var lb logBuf
		j = MustOpen(t, dir, testOpts(t, &lb))
		rec := j.Recovered()
		if diff := cmp.Diff(Recovery{Pending: []string{"first"}}, rec); diff != "" {
			t.Errorf("Recovered() (-want +got):\n%s", diff)
		}
		if !strings.Contains(lb.String(), "cutting off a torn or corrupt tail") {
			t.Errorf("no warning logged; log:\n%s", lb.String())
		}
	})
}

func checkTornTail(t *testing.T, j *Journal, lb *logBuf, path string, start, end int64) {
	t.Helper()
	rec := j.Recovered()
	if diff := cmp.Diff(Recovery{Pending: []string{"first"}, Outbound: 1}, rec); diff != "" {
		t.Errorf("Recovered() (-want +got):\n%s", diff)
	}
	if got, err := j.ReadInbound("first"); err != nil || string(got) != "first payload" {
		t.Errorf("ReadInbound(first) = %q, %v", got, err)
	}
	log := lb.String()
	for _, want := range []string{"cutting off a torn or corrupt tail", "file=" + path,
		fmt.Sprintf("offset=%d", start)} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q; log:\n%s", want, log)
		}
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != start {
		t.Errorf("file size after open = %v, %v; want %d", fi.Size(), err, start)
	}
}

func TestRoll(t *testing.T) {
	dir := t.TempDir()
	opts := testOpts(t, nil)
	opts.SegmentSize = 4 << 10
	j := MustOpen(t, dir, opts)
	ctx := context.Background()
	// Churn: most messages are done and most answers acknowledged, so the
	// live state stays small and the segments roll.
	var keepIn []string
	var keepOut []Out
	for i := range 500 {
		id := fmt.Sprintf("m%03d", i)
		MustAdd(t, j, id, payload(id, 100))
		seq := MustAppend(t, j, "out/"+id, payload(id, 50))
		if i%50 == 0 {
			keepIn = append(keepIn, id)
			keepOut = append(keepOut, Out{seq, "out/" + id, payload(id, 50)})
			if i%100 == 0 {
				if err := j.Handing(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		if err := j.Handing(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := j.Done(id); err != nil {
			t.Fatal(err)
		}
		if err := j.Acked(seq); err != nil {
			t.Fatal(err)
		}
	}
	st := j.Stats()
	if st.Segment < 5 {
		t.Fatalf("Segment = %d after 500 messages with 4 KiB segments; want several rolls", st.Segment)
	}
	if got := segments(t, dir); len(got) != 1 {
		t.Errorf("segment files = %v, want only the current one", got)
	}
	MustClose(t, j)

	check := func(t *testing.T, dir string) {
		j := MustOpen(t, dir, opts)
		var pending, handing []string
		for _, id := range keepIn {
			if id[1:] == "000" || strings.HasSuffix(id, "00") {
				handing = append(handing, id)
			} else {
				pending = append(pending, id)
			}
		}
		want := Recovery{Pending: pending, Handing: handing, Outbound: len(keepOut)}
		if diff := cmp.Diff(want, j.Recovered()); diff != "" {
			t.Errorf("Recovered() (-want +got):\n%s", diff)
		}
		for _, id := range keepIn {
			if got, err := j.ReadInbound(id); err != nil || string(got) != string(payload(id, 100)) {
				t.Errorf("ReadInbound(%s) = %q, %v", id, got, err)
			}
		}
		if diff := cmp.Diff(keepOut, allOutbound(t, j)); diff != "" {
			t.Errorf("outbound (-want +got):\n%s", diff)
		}
		if dup, err := j.AddInbound(ctx, "m499", nil); !dup || err != nil {
			t.Errorf("AddInbound(m499) = %v, %v; want a duplicate (done, in the snapshot's window)", dup, err)
		}
		if got := segments(t, dir); len(got) != 1 {
			t.Errorf("segment files after open = %v, want one", got)
		}
	}
	cur := segments(t, dir)[0]
	n, _ := parseSegName(cur)
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
	}{
		{"reopen", func(t *testing.T, dir string) {}},
		{"interrupted_roll", func(t *testing.T, dir string) {
			// A newer segment whose snapshot never completed.
			b := encSeq([]byte(magic), kindSnapBegin, 1)
			b = encInAdd(b, "x", 0, []byte("xxxxx"))
			b = b[:len(b)-3]
			if err := os.WriteFile(filepath.Join(dir, segName(n+1)), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"stale_older_segment", func(t *testing.T, dir string) {
			// An older segment the roll had no time to delete.
			if err := os.WriteFile(filepath.Join(dir, segName(n-1)), []byte(magic+"garbage"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := copyDir(t, dir)
			tt.setup(t, d)
			check(t, d)
		})
	}
}

func TestDedupe(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		size   int
		run    func(t *testing.T, j *Journal, clock *fakeClock)
		reopen bool
		want   map[string]bool // id → dup on AddInbound
	}{
		{"done_is_dup", 0, func(t *testing.T, j *Journal, c *fakeClock) {}, false, map[string]bool{"a": true, "b": true}},
		{"done_is_dup_after_reopen", 0, func(t *testing.T, j *Journal, c *fakeClock) {}, true, map[string]bool{"a": true, "b": true}},
		{"expires_by_age", 0, func(t *testing.T, j *Journal, c *fakeClock) { c.Advance(11 * time.Minute) }, false, map[string]bool{"a": false, "b": false}},
		{"expires_by_age_across_reopen", 0, func(t *testing.T, j *Journal, c *fakeClock) { c.Advance(11 * time.Minute) }, true, map[string]bool{"a": false, "b": false}},
		{"young_survives_age", 0, func(t *testing.T, j *Journal, c *fakeClock) { c.Advance(9 * time.Minute) }, true, map[string]bool{"a": true, "b": true}},
		{"expires_by_count", 1, func(t *testing.T, j *Journal, c *fakeClock) {}, true, map[string]bool{"a": false, "b": true}},
		{"forget", 0, func(t *testing.T, j *Journal, c *fakeClock) { j.Forget("a") }, true, map[string]bool{"a": false, "b": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			clock := newFakeClock()
			opts := testOpts(t, nil)
			opts.Now, opts.DedupeSize = clock.Now, tt.size
			j := MustOpen(t, dir, opts)
			for _, id := range []string{"a", "b"} {
				MustAdd(t, j, id, []byte(id))
				if err := j.Done(id); err != nil {
					t.Fatal(err)
				}
				clock.Advance(time.Second)
			}
			tt.run(t, j, clock)
			if tt.reopen {
				MustClose(t, j)
				j = MustOpen(t, dir, opts)
			}
			for _, id := range []string{"a", "b"} {
				dup, err := j.AddInbound(ctx, id, []byte("again"))
				if err != nil || dup != tt.want[id] {
					t.Errorf("AddInbound(%s) = %v, %v; want %v", id, dup, err, tt.want[id])
				}
			}
		})
	}
}

func TestBounds(t *testing.T) {
	ctx := context.Background()
	t.Run("outbound_drops_oldest_by_count", func(t *testing.T) {
		opts := testOpts(t, nil)
		opts.MaxCount = 3
		j := MustOpen(t, t.TempDir(), opts)
		for i := range 3 {
			MustAppend(t, j, fmt.Sprint("t", i), []byte("x"))
		}
		seq, dropped, err := j.AppendOutbound(ctx, "t3", []byte("yy"))
		if err != nil || seq != 4 {
			t.Fatalf("AppendOutbound = %d, %v", seq, err)
		}
		if diff := cmp.Diff([]Dropped{{Seq: 1, Topic: "t0", Bytes: 1}}, dropped); diff != "" {
			t.Errorf("dropped (-want +got):\n%s", diff)
		}
		if st := j.Stats(); st.Dropped != 1 || st.Outbound != 3 {
			t.Errorf("Stats: Dropped = %d, Outbound = %d; want 1, 3", st.Dropped, st.Outbound)
		}
		if o, ok, _ := j.NextOutbound(0); !ok || o.Seq != 2 {
			t.Errorf("first pending = %d, %v; want 2", o.Seq, ok)
		}
	})
	t.Run("outbound_drops_oldest_by_bytes", func(t *testing.T) {
		opts := testOpts(t, nil)
		opts.MaxBytes = 10
		j := MustOpen(t, t.TempDir(), opts)
		MustAppend(t, j, "a", []byte("12345"))
		MustAppend(t, j, "b", []byte("12345"))
		_, dropped, err := j.AppendOutbound(ctx, "c", []byte("123456"))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]Dropped{{1, "a", 5}, {2, "b", 5}}, dropped); diff != "" {
			t.Errorf("dropped (-want +got):\n%s", diff)
		}
		MustClose(t, j)
		j = MustOpen(t, j.dir, opts)
		if got := j.Recovered().Outbound; got != 1 {
			t.Errorf("after reopen Outbound = %d, want 1", got)
		}
	})
	t.Run("inbound_full_by_count", func(t *testing.T) {
		opts := testOpts(t, nil)
		opts.MaxInbound = 2
		j := MustOpen(t, t.TempDir(), opts)
		MustAdd(t, j, "a", []byte("a"))
		MustAdd(t, j, "b", []byte("b"))
		before := j.Stats()
		if _, err := j.AddInbound(ctx, "c", []byte("c")); !errors.Is(err, ErrFull) {
			t.Fatalf("AddInbound past the bound: %v, want ErrFull", err)
		}
		if after := j.Stats(); after != before {
			t.Errorf("a refused add changed the journal: %+v, was %+v", after, before)
		}
		if err := j.Done("a"); err != nil {
			t.Fatal(err)
		}
		MustAdd(t, j, "c", []byte("c"))
	})
	t.Run("inbound_full_by_bytes", func(t *testing.T) {
		opts := testOpts(t, nil)
		opts.MaxInboundBytes = 10
		j := MustOpen(t, t.TempDir(), opts)
		MustAdd(t, j, "big", payload("big", 20)) // alone: accepted
		if _, err := j.AddInbound(ctx, "x", []byte("x")); !errors.Is(err, ErrFull) {
			t.Fatalf("AddInbound past the bound: %v, want ErrFull", err)
		}
	})
}

func TestOpenErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ro := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(ro, 0o500); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		dir      string
		rootSkip bool
	}{
		{"under_a_regular_file", filepath.Join(file, "state"), false},
		{"read_only_dir", ro, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.rootSkip && os.Geteuid() == 0 {
				t.Skip("root ignores directory permissions")
			}
			j, err := Open(tt.dir, testOpts(t, nil))
			if err == nil {
				j.Close()
				t.Fatal("Open succeeded")
			}
			if want := "open journal " + tt.dir + ": "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error = %q, want prefix %q", err, want)
			}
		})
	}
}

func TestClose(t *testing.T) {
	before := runtime.NumGoroutine()
	dir := t.TempDir()
	j, err := Open(dir, testOpts(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	MustAdd(t, j, "a", []byte("a"))
	if err := j.Done("a"); err != nil {
		t.Fatal(err)
	}
	MustClose(t, j)
	MustClose(t, j) // idempotent
	if err := AwaitGoroutines(before, 5*time.Second); err != nil {
		t.Error(err)
	}
	ctx := context.Background()
	calls := []struct {
		name string
		call func() error
	}{
		{"add_inbound", func() error { _, err := j.AddInbound(ctx, "b", nil); return err }},
		{"handing", func() error { return j.Handing(ctx, "a") }},
		{"done", func() error { return j.Done("a") }},
		{"read_inbound", func() error { _, err := j.ReadInbound("a"); return err }},
		{"append_outbound", func() error { _, _, err := j.AppendOutbound(ctx, "t", nil); return err }},
		{"next_outbound", func() error { _, _, err := j.NextOutbound(0); return err }},
		{"acked", func() error { return j.Acked(1) }},
	}
	for _, tt := range calls {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, ErrClosed) {
				t.Errorf("after Close: %v, want ErrClosed", err)
			}
		})
	}
	// The lazy Done was flushed by Close.
	j = MustOpen(t, dir, testOpts(t, nil))
	if dup, _ := j.AddInbound(ctx, "a", nil); !dup {
		t.Error("Done before Close was lost")
	}
}

func TestCancelledContext(t *testing.T) {
	j := MustOpen(t, t.TempDir(), testOpts(t, nil))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := j.AddInbound(ctx, "a", []byte("a")); !errors.Is(err, context.Canceled) {
		t.Fatalf("AddInbound: %v, want context.Canceled", err)
	}
	if _, _, err := j.AppendOutbound(ctx, "t", []byte("a")); !errors.Is(err, context.Canceled) {
		t.Fatalf("AppendOutbound: %v, want context.Canceled", err)
	}
	MustAdd(t, j, "a", []byte("a")) // not a duplicate: nothing was kept
	if st := j.Stats(); st.Outbound != 0 || st.Inbound != 1 {
		t.Errorf("Stats = %+v, want 1 inbound, 0 outbound", st)
	}
}

func TestGroupCommitSyncs(t *testing.T) {
	// With fsync on, concurrent writers share syncs.
	opts := testOpts(t, nil)
	opts.NoSync = false
	j := MustOpen(t, t.TempDir(), opts)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := range 10 {
				if _, _, err := j.AppendOutbound(context.Background(), "t", payload(fmt.Sprint(w, i), 100)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	st := j.Stats()
	if st.Syncs == 0 || st.Syncs > st.Records {
		t.Errorf("Syncs = %d for %d records; want between 1 and %d", st.Syncs, st.Records, st.Records)
	}
	t.Logf("%d records, %d commits, %d syncs", st.Records, st.Commits, st.Syncs)
}

func TestLostDone(t *testing.T) {
	// A crash after Handing and before Done reached the disk: the copy of
	// the dir taken in between is what the disk held.
	ctx := context.Background()
	tests := []struct {
		name    string
		handing bool
		want    Recovery
	}{
		{"after_handing_is_handing", true, Recovery{Handing: []string{"a"}}},
		{"without_handing_is_pending", false, Recovery{Pending: []string{"a"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			j := MustOpen(t, dir, testOpts(t, nil))
			MustAdd(t, j, "a", []byte("a"))
			if tt.handing {
				if err := j.Handing(ctx, "a"); err != nil {
					t.Fatal(err)
				}
			}
			crashed := copyDir(t, dir)
			if err := j.Done("a"); err != nil {
				t.Fatal(err)
			}
			MustClose(t, j)
			j = MustOpen(t, crashed, testOpts(t, nil))
			if diff := cmp.Diff(tt.want, j.Recovered()); diff != "" {
				t.Errorf("Recovered() (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAddHanding: a message added and marked handing in one write comes
// back as handing after a crash, and is a duplicate meanwhile.
func TestAddHanding(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	j := MustOpen(t, dir, testOpts(t, nil))
	if dup, err := j.AddHanding(ctx, "a", []byte("a")); dup || err != nil {
		t.Fatalf("AddHanding = %v, %v; want false, nil", dup, err)
	}
	if dup, err := j.AddInbound(ctx, "a", []byte("a")); !dup || err != nil {
		t.Fatalf("AddInbound of a handing id = %v, %v; want a duplicate", dup, err)
	}
	crashed := copyDir(t, dir)
	MustClose(t, j)
	j = MustOpen(t, crashed, testOpts(t, nil))
	if diff := cmp.Diff(Recovery{Handing: []string{"a"}}, j.Recovered()); diff != "" {
		t.Errorf("Recovered() (-want +got):\n%s", diff)
	}
	if p, err := j.ReadInbound("a"); err != nil || string(p) != "a" {
		t.Errorf("ReadInbound = %q, %v; want the payload", p, err)
	}
}

// TestAppendAnswerEffects: an answer settles the message it answers in
// the same write, so that the state a crash leaves has both or neither.
// A worker's answer (IfHanding) settles only a message being handed: one
// still waiting has not reached its worker, so the answer cannot be its
// worker's.
func TestAppendAnswerEffects(t *testing.T) {
	tests := []struct {
		name    string
		handing bool
		effect  Effect
		want    Recovery // after a crash right after the answer
		dup     bool     // the same id sent again is dropped
	}{
		{"waiting/if-handing", false, IfHanding, Recovery{Pending: []string{"a"}, Outbound: 1}, true},
		{"handing/if-handing", true, IfHanding, Recovery{Outbound: 1}, true},
		{"waiting/finish", false, Finish, Recovery{Outbound: 1}, true},
		{"handing/finish", true, Finish, Recovery{Outbound: 1}, true},
		{"waiting/refuse", false, Refuse, Recovery{Outbound: 1}, false},
		{"handing/refuse", true, Refuse, Recovery{Outbound: 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			j := MustOpen(t, dir, testOpts(t, nil))
			add := j.AddInbound
			if tt.handing {
				add = j.AddHanding
			}
			if _, err := add(ctx, "a", []byte("a")); err != nil {
				t.Fatal(err)
			}
			if _, _, err := j.AppendAnswer(ctx, "t", []byte("answer"), "a", tt.effect); err != nil {
				t.Fatal(err)
			}
			if got, want := j.Waiting("a"), len(tt.want.Pending) > 0; got != want {
				t.Errorf("Waiting = %v, want %v", got, want)
			}
			crashed := copyDir(t, dir)
			MustClose(t, j)
			j = MustOpen(t, crashed, testOpts(t, nil))
			defer MustClose(t, j)
			if diff := cmp.Diff(tt.want, j.Recovered()); diff != "" {
				t.Errorf("Recovered() (-want +got):\n%s", diff)
			}
			if dup, err := j.AddInbound(ctx, "a", []byte("a")); err != nil || dup != tt.dup {
				t.Errorf("AddInbound of the same id = %v, %v; want %v", dup, err, tt.dup)
			}
		})
	}
}

// TestCloseWhileWriting: Close while callers commit on their own
// goroutines (leading the group commit) and on the writer's: every call
// returns, either done or ErrClosed, and no goroutine is left.
func TestCloseWhileWriting(t *testing.T) {
	for round := range 20 {
		before := runtime.NumGoroutine()
		opts := testOpts(t, nil)
		opts.NoSync = round%2 == 0
		j := MustOpen(t, t.TempDir(), opts)
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := 0; ; i++ {
					_, err := j.AddHanding(context.Background(), fmt.Sprint(w, "-", i), payload("x", 64))
					if err == nil {
						err = j.Done(fmt.Sprint(w, "-", i))
					}
					if err != nil {
						if !errors.Is(err, ErrClosed) {
							t.Errorf("writer %d: %v, want nil or ErrClosed", w, err)
						}
						return
					}
				}
			})
		}
		MustAdd(t, j, "first", nil) // the writers are under way
		MustClose(t, j)
		wg.Wait()
		if err := AwaitGoroutines(before, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

// TestZerosAhead: records go into zeros written ahead of them, which a
// reopen takes for the end of the segment, silently; anything but zeros
// after the last record is still damage, cut off with a warning.
func TestZerosAhead(t *testing.T) {
	dir := t.TempDir()
	j := MustOpen(t, dir, testOpts(t, nil))
	for _, id := range []string{"a", "b", "c"} {
		MustAdd(t, j, id, payload(id, 100))
	}
	end := j.Stats().SegmentBytes
	MustClose(t, j)
	path := filepath.Join(dir, segments(t, dir)[0])
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() <= end {
		t.Fatalf("segment is %d bytes with records up to %d: nothing written ahead", fi.Size(), end)
	}

	var lb logBuf
	j = MustOpen(t, dir, testOpts(t, &lb))
	if diff := cmp.Diff([]string{"a", "b", "c"}, j.Recovered().Pending); diff != "" {
		t.Errorf("pending after reopen (-want +got):\n%s", diff)
	}
	if got := j.Stats().SegmentBytes; got != end {
		t.Errorf("segment bytes after reopen = %d, want %d (the zeros are not records)", got, end)
	}
	if strings.Contains(lb.String(), "cutting off") {
		t.Errorf("zeros ahead taken for damage; log:\n%s", lb.String())
	}
	MustAdd(t, j, "d", payload("d", 100)) // written in place, over the zeros
	end = j.Stats().SegmentBytes
	MustClose(t, j)

	// A stray byte in the zeros (a later write that reached the disk when
	// an earlier one did not) is damage.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] = 1
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	lb = logBuf{}
	j = MustOpen(t, dir, testOpts(t, &lb))
	if diff := cmp.Diff([]string{"a", "b", "c", "d"}, j.Recovered().Pending); diff != "" {
		t.Errorf("pending after damage (-want +got):\n%s", diff)
	}
	if !strings.Contains(lb.String(), "cutting off a torn or corrupt tail") || !strings.Contains(lb.String(), fmt.Sprintf("offset=%d", end)) {
		t.Errorf("no warning for the stray byte at the records' end %d; log:\n%s", end, lb.String())
	}
	MustClose(t, j)
}

func TestGroupWait(t *testing.T) {
	// A commit after a group of two durable callers waits four times what
	// a sync takes for the records of other callers, and syncs them all at
	// once; a caller alone does not wait, nor does a group whose syncs cost
	// next to nothing.
	opts := testOpts(t, nil)
	opts.NoSync, opts.GroupWait = false, time.Hour
	j := MustOpen(t, t.TempDir(), opts)
	var waits atomic.Int32
	j.groupWait = func(time.Duration) { waits.Add(1) }
	// setGroup sets what the last sync left: its group and sync time.
	setGroup := func(group int, syncTime time.Duration) {
		j.wmu.Lock()
		j.group, j.syncTime = group, syncTime
		j.wmu.Unlock()
	}
	// batched polls, for up to 10 s, until the batch holds n records, n
	// of them durable if durable.
	batched := func(n int, durable bool) bool {
		for until := time.Now().Add(10 * time.Second); time.Now().Before(until); runtime.Gosched() {
			j.mu.RLock()
			got := j.nrec
			if durable {
				got = len(j.waiters)
			}
			j.mu.RUnlock()
			if got >= n {
				return true
			}
		}
		return false
	}
	for i := range 5 {
		MustAppend(t, j, "t", payload(fmt.Sprint("alone", i), 100))
	}
	if n := waits.Load(); n != 0 {
		t.Fatalf("a caller alone waited %d times", n)
	}

	// Two durable callers whose records the writer syncs in one turn: the
	// journal counts the group and measures the sync.
	j.wmu.Lock()
	var pair sync.WaitGroup
	for i := range 2 {
		pair.Go(func() { MustAppend(t, j, "t", payload(fmt.Sprint("pair", i), 100)) })
	}
	if !batched(2, true) {
		j.wmu.Unlock()
		t.Fatal("the two durable records did not reach the batch within 10 s")
	}
	j.syncTime = 0
	j.wmu.Unlock()
	pair.Wait()
	j.wmu.Lock()
	g, st := j.group, j.syncTime
	j.wmu.Unlock()
	if g != 2 || st <= 0 {
		t.Fatalf("after a sync of two callers: group %d, sync time %v; want 2 and more than 0", g, st)
	}

	// Closing does not wait.
	j.wmu.Lock()
	j.group, j.syncTime = 2, time.Millisecond
	j.mu.Lock()
	j.closing = true
	j.waiters = append(j.waiters, make(chan error, 1))
	j.mu.Unlock()
	d := j.groupDue()
	j.mu.Lock()
	j.closing, j.waiters = false, j.waiters[:len(j.waiters)-1]
	j.mu.Unlock()
	j.wmu.Unlock()
	if d != 0 {
		t.Fatalf("a closing journal's group is due in %v; want none", d)
	}

	setGroup(2, time.Microsecond)
	MustAppend(t, j, "t", payload("free sync", 100))
	if n := waits.Load(); n != 0 {
		t.Fatalf("waited %d times where a sync takes 1 µs", n)
	}

	// A caller that does not wait for the sync (here Acked, as the
	// outbox's pump calls it) does not wait for a group either: it leaves
	// the turn to the writer goroutine, which waits and syncs the durable
	// records with its own.
	seq := MustAppend(t, j, "t", payload("acked", 100))
	waiter := make(chan error, 1)
	j.mu.Lock()
	j.waiters = append(j.waiters, waiter)
	j.mu.Unlock()
	setGroup(2, time.Millisecond)
	inWait, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // before Close, which waits for the turn
	j.groupWait = func(time.Duration) {
		close(inWait)
		<-release
	}
	acked := make(chan error, 1)
	go func() { acked <- j.Acked(seq) }()
	select {
	case <-inWait:
	case <-time.After(10 * time.Second):
		t.Fatal("no group wait for the durable record")
	}
	select {
	case err := <-acked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Acked waited for the group")
	}
	free()
	if err := <-waiter; err != nil {
		t.Fatalf("the durable record after Acked's turn: %v", err)
	}
	j.groupWait = func(time.Duration) { waits.Add(1) }

	setGroup(2, time.Millisecond)
	before := j.Stats()
	waiting := make(chan struct{})
	j.groupWait = func(d time.Duration) {
		if d != 4*time.Millisecond {
			t.Errorf("waited %v; want 4 ms, four syncs of 1 ms", d)
		}
		close(waiting)
		if !batched(2, false) { // the second caller's record joins the batch
			t.Error("the second caller's record did not join the waiting batch within 10 s")
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { MustAppend(t, j, "t", payload("first", 100)) })
	select {
	case <-waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("the commit after a group of two did not wait")
	}
	wg.Go(func() { MustAppend(t, j, "t", payload("second", 100)) })
	wg.Wait()
	after := j.Stats()
	if c, s := after.Commits-before.Commits, after.Syncs-before.Syncs; c != 1 || s != 1 {
		t.Errorf("two callers during a group wait took %d commits and %d syncs; want 1 and 1", c, s)
	}
}
