package worker

import "time"

// Clock is the time source of a Pool's restart logic (backoff waits, run
// lengths, kill and restart windows), injectable for tests. Deadlines are
// always real: the guards enforce them on CLOCK_BOOTTIME.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

// realClock is the system clock.
type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
