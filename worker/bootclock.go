package worker

import (
	"time"

	"github.com/regentd/regent/internal/boottime"
)

// bootNow returns CLOCK_BOOTTIME in nanoseconds. The supervisor and its
// guards run on one host and share this clock, which does not jump with
// the wall clock and, unlike CLOCK_MONOTONIC, counts time the host spent
// suspended, so deadlines cross the control pipe as absolute instants
// and a lease that expired during a suspend is seen expired at resume.
func bootNow() int64 { return boottime.Nanos() }

// bootAt converts t, a deadline made from boottime.Now, to an absolute
// CLOCK_BOOTTIME instant.
func bootAt(t time.Time) int64 { return boottime.At(t) }
