package supervisor

import (
	"sync/atomic"
	"time"
)

// clock is the time of the balancer, the hold-backs and the observer:
// the wall clock, as the records they compare with (a member's last
// seen, a step-down request's time) carry wall times written by other
// hosts. The leader's deadlines run on Config.Now instead. Tests inject
// a clock they advance (Config.clock), so that holds, batch pacing and
// rechecks are driven by the test instead of waited for.
type clock interface {
	Now() time.Time
	// NewTimer returns a channel that receives once d has passed, and
	// a function that releases the timer.
	NewTimer(d time.Duration) (<-chan time.Time, func())
}

// wallClock is the clock outside tests.
type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

func (wallClock) NewTimer(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}

// update sets *p to f of its current value, atomically: f may run more
// than once (a compare-and-swap loop) and must only compute. It returns
// the old and the new value. A nil *p reads as T's zero value.
func update[T any](p *atomic.Pointer[T], f func(T) T) (old, new T) {
	for {
		cur := p.Load()
		if cur != nil {
			old = *cur
		} else {
			var zero T
			old = zero
		}
		new = f(old)
		if p.CompareAndSwap(cur, &new) {
			return old, new
		}
	}
}
