package journal

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkJournalAppend measures group commit with fsync on: writers
// goroutines append 100-byte answers concurrently. It reports records/s
// and fsyncs per record.
func BenchmarkJournalAppend(b *testing.B) {
	for _, writers := range []int{1, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			opts := testOpts(b, nil)
			opts.NoSync = false
			opts.Log = nil
			opts.MaxCount, opts.MaxBytes = 1<<30, 1<<40
			j := MustOpen(b, b.TempDir(), opts)
			p := make([]byte, 100)
			ctx := context.Background()
			before := j.Stats()
			var next atomic.Int64
			b.ResetTimer()
			var wg sync.WaitGroup
			for range writers {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if _, _, err := j.AppendOutbound(ctx, "t", p); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			st := j.Stats()
			recs := float64(st.Records - before.Records)
			b.ReportMetric(recs/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(st.Syncs-before.Syncs)/recs, "fsyncs/record")
		})
	}
}
