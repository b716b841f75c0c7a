// Package boottime is the clock regent's deadlines run on: a host that
// suspends (laptop lid, VM suspend-to-RAM, a cloud instance hibernated)
// stops CLOCK_MONOTONIC, and with it Go's monotonic time, but not
// CLOCK_BOOTTIME. A lease granted before a suspend has expired on the
// backend after it, so a leader or a guard that counted only monotonic
// time would trust it for up to a lease too long.
//
// Now returns a time.Time whose monotonic reading has been moved forward by
// the time the host spent suspended since this process started. Such
// values compare, subtract and feed timers like any time.Time; comparing
// two of them measures CLOCK_BOOTTIME. Every deadline in regent (a
// leadership's ValidUntil, the supervisor's fence, a pool's deadline) is
// made from Now, and compared with Now, never with time.Now.
//
// Timers (time.NewTimer, time.After) still count CLOCK_MONOTONIC: one
// armed before a suspend fires late by the suspension. Code that must act
// at a deadline across a suspend rechecks Now on a short tick, or (the
// guard) uses a CLOCK_BOOTTIME timerfd. Deadlines that cross to another
// process (the guard) travel as absolute CLOCK_BOOTTIME nanoseconds (At).
package boottime

import (
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// resolution is the smallest suspension counted: the two clocks are read
// one after the other, and a read preempted between them (a loaded host,
// the race detector) misjudges their offset by the delay. A suspension
// shorter than this is far inside every fence margin.
const resolution = 10 * time.Millisecond

// recheck is how often, at most, Suspended reads the two clocks: reading
// them is nine system calls (CLOCK_BOOTTIME has no vDSO path in Go), and
// a Postgres replica with thousands of queues asks the time thousands of
// times per round (measured: over half of its CPU went to these calls).
// Between reads it returns the last value, so a suspension is seen at
// most recheck of monotonic time late: far finer than resolution, and
// than every fence margin.
const recheck = time.Millisecond

var (
	// read is clock_gettime; tests replace it to make a suspend.
	read = clockGettime
	// base is CLOCK_BOOTTIME - CLOCK_MONOTONIC at start.
	base      = offset()
	suspended atomic.Int64
	// start is the origin of checked; checked is the monotonic time since
	// start of the last read of the clocks (time.Since reads the
	// monotonic clock through the vDSO: no system call).
	start   = time.Now()
	checked atomic.Int64
)

// Nanos returns CLOCK_BOOTTIME in nanoseconds: monotonic, counting
// suspend, shared by every process of the host.
func Nanos() int64 { return read(unix.CLOCK_BOOTTIME) }

// Now returns the current time on the suspend-counting clock (see the
// package doc).
func Now() time.Time { return time.Now().Add(Suspended()) }

// Until returns how long until t, a time made from Now.
func Until(t time.Time) time.Duration { return t.Sub(Now()) }

// Since returns how long since t, a time made from Now.
func Since(t time.Time) time.Duration { return Now().Sub(t) }

// At converts t, a time made from Now, to absolute CLOCK_BOOTTIME
// nanoseconds, for another process of this host.
func At(t time.Time) int64 { return Nanos() + int64(Until(t)) }

// Suspended returns how long the host has been suspended since this
// process started (never decreasing; whole milliseconds), as of at most
// recheck ago.
func Suspended() time.Duration {
	now := int64(time.Since(start))
	if now-checked.Load() < int64(recheck) {
		return time.Duration(suspended.Load())
	}
	defer checked.Store(now)
	d := offset() - base
	if d < int64(resolution) {
		return time.Duration(suspended.Load())
	}
	d -= d % int64(resolution)
	for {
		old := suspended.Load()
		if d <= old {
			return time.Duration(old)
		}
		if suspended.CompareAndSwap(old, d) {
			return time.Duration(d)
		}
	}
}

// offset returns CLOCK_BOOTTIME - CLOCK_MONOTONIC. It reads MONOTONIC on
// both sides of BOOTTIME, three times, and keeps the tightest of the
// three: its error is at most half the gap between its two reads.
func offset() int64 {
	var best, gap int64
	for i := 0; i < 3; i++ {
		m1 := read(unix.CLOCK_MONOTONIC)
		b := read(unix.CLOCK_BOOTTIME)
		m2 := read(unix.CLOCK_MONOTONIC)
		if i == 0 || m2-m1 < gap {
			best, gap = b-(m1+m2)/2, m2-m1
		}
	}
	return best
}

// clockGettime returns clock id in nanoseconds.
func clockGettime(id int32) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(id, &ts); err != nil {
		// Both clocks exist on every Linux regent runs on (2.6.39+).
		panic("boottime: clock_gettime: " + err.Error())
	}
	return ts.Nano()
}
