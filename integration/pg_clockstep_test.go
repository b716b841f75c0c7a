package integration

import (
	"testing"
	"time"

	"github.com/regentd/regent/internal/faultproxy"
	"github.com/regentd/regent/internal/testenv"
)

// The PostgreSQL server's wall clock steps forward by more than the lease
// (an NTP step, a failover to a host with another clock) just after the
// leader was cut off from it (DESIGN.md, safety property 7). On the
// server's clock the leader's lease has long expired and its lingering
// session is stale at once; the leader trusts its lease until its own
// deadline, on its own clock. The follower must not start workers before
// the leader's have stopped (the observer finds no overlap), and still
// takes over within the cut-off bound; no orphan is left. A private
// server, with libfaketime preloaded, is the only clock stepped.
func TestPostgresClockStep(t *testing.T) {
	srv := testenv.NewPostgresWith(t, testenv.PostgresOptions{FakeClock: true})
	be := privatePostgresBackend(srv)
	p, err := faultproxy.Start(be.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	m := startCase(t, be, be.viaProxy(p.Addr()), "b")

	const what = "postgres clock step"
	step := 3 * testTTL
	cutAt := time.Now()
	p.SetMode(faultproxy.Blackhole)
	srv.StepClock(t, step)
	t.Logf("%s: a cut off, then the server's clock stepped %s forward", what, step)
	m.oldWorkersGone(what, cutAt, boundCutOff)
	m.takeover(what, cutAt, boundCutOff)
	p.SetMode(faultproxy.Pass)
	m.c.waitFollower(mq, "a")
	m.finishClockAhead(srv.ClockOffset())
}

// finishClockAhead runs the end-of-case checks of finishHealed when the
// server's clock runs offset ahead of the host's (checkHistoryAhead).
func (m *matrixCase) finishClockAhead(offset time.Duration) {
	m.t.Helper()
	rep := m.c.finishChecks(m.reps, []string{mq}, m.c.lines, workerTick, hangTimeout)
	m.c.checkHistoryAhead(rep, []string{mq}, offset)
}
