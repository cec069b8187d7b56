package yggdrasil

import (
	"testing"

	"github.com/ygglab/yggdrasil/yggdrasil/journal"
)

// testJournal opens a journal in a temporary directory, without fsync
// (the journal's own tests cover durability), closed with the test.
func testJournal(tb testing.TB, opts journal.Options) *journal.Journal {
	tb.Helper()
	opts.NoSync = true
	j, err := journal.Open(tb.TempDir(), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { j.Close() })
	return j
}
