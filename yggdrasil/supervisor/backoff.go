//go:build linux

package supervisor

import "time"

// Default restart delays.
const (
	DefaultBackoffMin   = 1 * time.Second
	DefaultBackoffMax   = 30 * time.Second
	DefaultHealthyAfter = 60 * time.Second
)

// Backoff is the restart schedule of a worker: the first restart waits Min,
// each further one twice the previous delay up to Max, and a process that
// ran at least HealthyAfter starts the schedule over. Zero fields take the
// defaults (1 s, 30 s, 60 s).
type Backoff struct {
	Min          time.Duration
	Max          time.Duration
	HealthyAfter time.Duration
}

// withDefaults returns b with its zero fields set to the defaults.
func (b Backoff) withDefaults() Backoff {
	if b.Min <= 0 {
		b.Min = DefaultBackoffMin
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	if b.Max < b.Min {
		b.Max = b.Min
	}
	if b.HealthyAfter <= 0 {
		b.HealthyAfter = DefaultHealthyAfter
	}
	return b
}

// Next returns the delay before the next start of a worker whose process
// just ended after running for ran, when prev was the delay waited before
// that start (0 for the first start). A failed start counts as ran == 0.
func (b Backoff) Next(prev, ran time.Duration) time.Duration {
	b = b.withDefaults()
	if prev <= 0 || ran >= b.HealthyAfter {
		return b.Min
	}
	if prev >= b.Max/2 {
		return b.Max
	}
	return max(2*prev, b.Min)
}
