package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FakeTimeLib is Debian's libfaketime (package libfaketime), preloaded
// into a private Postgres server started with PostgresOptions.FakeClock.
const FakeTimeLib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"

// EnvCI names the environment variable set by .ci/run: under CI a test
// that needs a tool the machine lacks fails instead of being skipped.
const EnvCI = "REGENT_CI"

// fakeTimeFile names the file, in a server's directory, that holds the
// offset of its wall clock ("+6.000": seconds, as libfaketime reads it).
const fakeTimeFile = "faketime"

// RequireFakeTime skips t when FakeTimeLib is missing, or fails it under
// CI (EnvCI set), where .ci/run installs it.
func RequireFakeTime(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(FakeTimeLib); err == nil {
		return
	}
	msg := fmt.Sprintf("testenv: %s is missing (apt-get install libfaketime)", FakeTimeLib)
	if os.Getenv(EnvCI) != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// fakeTimeEnv returns the environment that makes a server's wall clock
// follow the offset in its fakeTimeFile: read again at every clock read
// (no cache), so that a step reaches every running backend at once; the
// monotonic clock is left alone (timeouts, latches). postgres forks every
// backend from the postmaster, which inherits LD_PRELOAD.
func (p *PostgresProc) fakeTimeEnv() []string {
	return []string{
		"LD_PRELOAD=" + FakeTimeLib,
		"FAKETIME_TIMESTAMP_FILE=" + filepath.Join(p.root, fakeTimeFile),
		"FAKETIME_NO_CACHE=1",
		"FAKETIME_DONT_FAKE_MONOTONIC=1",
	}
}

// writeClockOffset replaces the offset file atomically (a reader never
// sees it half written).
func (p *PostgresProc) writeClockOffset(d time.Duration) error {
	path := filepath.Join(p.root, fakeTimeFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "%+.6f\n", d.Seconds()), 0o644); err != nil {
		return fmt.Errorf("testenv: clock offset: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("testenv: clock offset: %w", err)
	}
	return nil
}

// StepClock moves the wall clock of a server started with FakeClock by d
// (forward if d > 0), at once and in every session, as an NTP step or a
// failover to a host with another clock would: now(), clock_timestamp()
// and every timestamp the server writes. The host's clock and the
// server's monotonic clock are not touched. Steps add up.
func (p *PostgresProc) StepClock(t testing.TB, d time.Duration) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.fakeClock {
		t.Fatal("testenv: StepClock on a server started without FakeClock")
	}
	if err := p.writeClockOffset(p.clockOffset + d); err != nil {
		t.Fatal(err)
	}
	p.clockOffset += d
}

// ClockOffset returns how far the server's wall clock is ahead of the
// host's (the sum of the steps so far).
func (p *PostgresProc) ClockOffset() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.clockOffset
}
