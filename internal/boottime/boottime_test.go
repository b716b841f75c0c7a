package boottime

import (
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeSuspend makes read report CLOCK_BOOTTIME ahead of CLOCK_MONOTONIC by
// the real offset plus whatever the test adds: a host suspend, as the
// kernel shows it (a real one cannot be made here).
type fakeSuspend struct {
	mu    sync.Mutex
	extra int64
}

func (f *fakeSuspend) add(d time.Duration) {
	f.mu.Lock()
	f.extra += int64(d)
	f.mu.Unlock()
}

func (f *fakeSuspend) read(id int32) int64 {
	n := clockGettime(id)
	if id == unix.CLOCK_BOOTTIME {
		f.mu.Lock()
		n += f.extra
		f.mu.Unlock()
	}
	return n
}

func TestSuspendMovesNowForward(t *testing.T) {
	f := &fakeSuspend{}
	read = f.read
	t.Cleanup(func() {
		// The next test (-count) starts from a host never suspended.
		read = clockGettime
		suspended.Store(0)
		checked.Store(0)
	})

	before := Suspended()
	deadline := Now().Add(10 * time.Second) // a lease's deadline
	f.add(30 * time.Second)                 // the host slept through it
	// Seen within recheck of monotonic time (a second: a hang).
	woke := time.Now()
	for Suspended()-before < 30*time.Second-resolution {
		if time.Since(woke) > time.Second {
			t.Fatalf("a 30s suspend not seen %s after it", time.Since(woke))
		}
	}
	if got := Suspended() - before; got > 30*time.Second+resolution {
		t.Fatalf("Suspended grew by %s, want 30s", got)
	}
	if left := Until(deadline); left > -19*time.Second {
		t.Fatalf("after a 30s suspend the 10s deadline is %s away; want about 20s past", left)
	}
	if time.Until(deadline) < 9*time.Second {
		t.Fatal("the monotonic clock moved; the fake should only move CLOCK_BOOTTIME")
	}
	// Never backwards, even if the clocks' offset seems to shrink.
	f.add(-30 * time.Second)
	for seen := time.Now(); time.Since(seen) < 10*recheck; {
		if got := Suspended() - before; got < 30*time.Second-resolution {
			t.Fatalf("Suspended went back to %s", got)
		}
	}
	// At converts to CLOCK_BOOTTIME as the guards count it.
	at := At(deadline)
	if d := at - f.read(unix.CLOCK_BOOTTIME); d > int64(-19*time.Second) {
		t.Fatalf("At is %s from CLOCK_BOOTTIME, want about -20s", time.Duration(d))
	}
}

func TestNoSuspendNoOffset(t *testing.T) {
	if d := Suspended(); d != 0 {
		t.Skipf("this host has been suspended %s since the test started", d)
	}
	a, b := Now(), time.Now()
	if d := b.Sub(a); d < 0 || d > time.Second {
		t.Fatalf("Now and time.Now differ by %s without a suspend", d)
	}
}

// Between two reads of the clocks Suspended costs no system call: a
// Postgres replica with thousands of queues asks it thousands of times
// per round.
func BenchmarkNow(b *testing.B) {
	for b.Loop() {
		Now()
	}
}
