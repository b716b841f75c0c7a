package worker

import "time"

// RestartPolicy says when a crashed worker is started again. Zero fields
// take the defaults given on each.
type RestartPolicy struct {
	// InitialBackoff is the delay after the first crash. Default 1s.
	InitialBackoff time.Duration
	// MaxBackoff caps the delay. Default 60s.
	MaxBackoff time.Duration
	// Jitter is the largest fraction taken off a delay at random, so that
	// restarts spread out but never exceed MaxBackoff. Default 0.1;
	// negative means none.
	Jitter float64
	// ResetAfter: a run at least this long forgets earlier crashes.
	// Default 5m.
	ResetAfter time.Duration
	// MaxCrashes: after this many consecutive crashes the worker is
	// degraded (reported in status and metrics) and retried at
	// MaxBackoff until a run lasts ResetAfter. Default 10.
	MaxCrashes int
}

// withDefaults fills zero fields.
func (p RestartPolicy) withDefaults() RestartPolicy {
	if p.InitialBackoff <= 0 {
		p.InitialBackoff = time.Second
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = time.Minute
	}
	if p.MaxBackoff < p.InitialBackoff {
		p.MaxBackoff = p.InitialBackoff
	}
	switch {
	case p.Jitter == 0:
		p.Jitter = 0.1
	case p.Jitter < 0:
		p.Jitter = 0
	case p.Jitter > 1:
		p.Jitter = 1
	}
	if p.ResetAfter <= 0 {
		p.ResetAfter = 5 * time.Minute
	}
	if p.MaxCrashes <= 0 {
		p.MaxCrashes = 10
	}
	return p
}

// Backoff returns the delay before restarting a worker after its n-th
// consecutive crash (n >= 1): InitialBackoff doubled n-1 times, capped at
// MaxBackoff, and MaxBackoff from the MaxCrashes-th crash on; then up to
// Jitter of it is taken off, r (in [0,1)) saying how much. Zero fields of
// p take their defaults.
func Backoff(p RestartPolicy, n int, r float64) time.Duration {
	p = p.withDefaults()
	if n < 1 {
		n = 1
	}
	d := p.InitialBackoff
	if n >= p.MaxCrashes {
		d = p.MaxBackoff
	}
	for i := 1; i < n && d < p.MaxBackoff; i++ {
		d *= 2
	}
	if d > p.MaxBackoff {
		d = p.MaxBackoff
	}
	if r < 0 {
		r = 0
	}
	if r >= 1 {
		r = 1
	}
	return d - time.Duration(float64(d)*p.Jitter*r)
}
