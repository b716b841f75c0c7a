package worker

import (
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// bootTimer fires at an absolute CLOCK_BOOTTIME instant: a timerfd, so
// that a deadline that passed while the host was suspended fires at
// resume (a Go timer counts CLOCK_MONOTONIC and would fire late by the
// suspension). C receives once per expiry; Set re-arms it; Stop ends its
// reader goroutine and waits for it.
type bootTimer struct {
	C    <-chan struct{}
	f    *os.File
	fd   int
	done sync.WaitGroup
}

// newBootTimer returns a timer armed for at (CLOCK_BOOTTIME ns).
func newBootTimer(at int64) (*bootTimer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_BOOTTIME, unix.TFD_CLOEXEC|unix.TFD_NONBLOCK)
	if err != nil {
		return nil, err
	}
	c := make(chan struct{}, 1)
	t := &bootTimer{C: c, fd: fd, f: os.NewFile(uintptr(fd), "regent-deadline")}
	if err := t.Set(at); err != nil {
		t.f.Close()
		return nil, err
	}
	t.done.Add(1)
	go func() {
		defer t.done.Done()
		buf := make([]byte, 8)
		for {
			// The descriptor is non-blocking: os.File parks in the poller
			// until an expiry, and Close wakes it with an error.
			if _, err := t.f.Read(buf); err != nil {
				return
			}
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}()
	return t, nil
}

// Set re-arms the timer for at (CLOCK_BOOTTIME ns); an instant already
// passed fires at once.
func (t *bootTimer) Set(at int64) error {
	if at <= 0 {
		at = 1 // zero would disarm it
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(at)}
	return unix.TimerfdSettime(t.fd, unix.TFD_TIMER_ABSTIME, &spec, nil)
}

// Stop disarms the timer and waits for its reader to end.
func (t *bootTimer) Stop() {
	t.f.Close()
	t.done.Wait()
}
