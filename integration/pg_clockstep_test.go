package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/integration/observer"
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
// server's clock runs offset ahead of the host's: the history records
// terms on the server's clock, so a term's recorded start is compared with
// its first worker line moved by offset.
func (m *matrixCase) finishClockAhead(offset time.Duration) {
	m.t.Helper()
	t, c := m.t, m.c
	rep := c.finishChecks(m.reps, []string{mq}, c.lines, workerTick, hangTimeout)

	ctx, cancel := context.WithTimeout(context.Background(), hangTimeout)
	defer cancel()
	b := c.readOnly(ctx)
	defer func() {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer ccancel()
		_ = b.Close(cctx)
	}()
	hist, err := b.History(ctx, mq, 10*election.HistoryKeep)
	if err != nil {
		t.Fatalf("history of %s: %v", mq, err)
	}
	// Terms that began before the step were recorded on the host's time;
	// the check only fails a worker line earlier than the recorded start.
	for i := range hist {
		if !hist[i].From.IsZero() {
			hist[i].From = hist[i].From.Add(-offset)
		}
	}
	if problems := observer.CheckHistory(rep, mq, hist, historySkew); len(problems) > 0 {
		t.Errorf("terms seen in the workers but not recorded as leaderships:\n%s", strings.Join(problems, "\n"))
	}
}
