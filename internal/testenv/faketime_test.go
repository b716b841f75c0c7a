package testenv

import (
	"testing"
	"time"
)

// A server started with FakeClock runs on the host's clock until a step,
// which reaches a session already open at once; the server keeps working
// (it forks every backend with the preload) and restarts with its offset.
func TestPostgresFakeClock(t *testing.T) {
	p := NewPostgresWith(t, PostgresOptions{FakeClock: true})
	conn := pgConnect(t, p.URL())
	// skew returns how far the server's clock_timestamp() is ahead of the
	// host's clock (read halfway through the round trip).
	skew := func() time.Duration {
		t.Helper()
		var server time.Time
		before := time.Now()
		if err := conn.QueryRow(ctxT(t), "SELECT clock_timestamp()").Scan(&server); err != nil {
			t.Fatal(err)
		}
		after := time.Now()
		return server.Sub(before.Add(after.Sub(before) / 2))
	}
	near := func(what string, got, want time.Duration) {
		t.Helper()
		if d := got - want; d < -time.Second || d > time.Second {
			t.Fatalf("%s: server clock %s ahead of the host's, want %s", what, got, want)
		}
	}
	near("at start", skew(), 0)
	p.StepClock(t, time.Hour)
	near("after a step of 1h", skew(), time.Hour)
	p.StepClock(t, -90*time.Minute)
	near("after a step back of 1h30m", skew(), -30*time.Minute)
	if got := p.ClockOffset(); got != -30*time.Minute {
		t.Fatalf("ClockOffset %s", got)
	}

	p.Restart(t)
	conn = pgConnect(t, p.URL())
	near("after a restart", skew(), -30*time.Minute)
}
