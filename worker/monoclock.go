package worker

import (
	"time"

	"golang.org/x/sys/unix"
)

// monoNow returns CLOCK_MONOTONIC in nanoseconds. The supervisor and its
// guards run on one host and share this clock, so deadlines cross the
// control pipe as absolute monotonic instants.
func monoNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		// CLOCK_MONOTONIC exists on every Linux; this cannot happen.
		panic("worker: clock_gettime(CLOCK_MONOTONIC): " + err.Error())
	}
	return ts.Nano()
}

// monoAt converts t to an absolute CLOCK_MONOTONIC instant. time.Until uses
// t's monotonic reading when it has one, so wall-clock steps do not move it.
func monoAt(t time.Time) int64 {
	return monoNow() + int64(time.Until(t))
}
