package integration

import (
	"context"
	"strings"
	"syscall"
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
	c.waitLeadersRunning(c.lines, []string{mq}, 250*time.Millisecond, hangTimeout)
	c.waitStatusOK(hangTimeout)
	for _, r := range m.reps {
		if r.exited() {
			t.Errorf("replica %s exited unexpectedly: %v", r.node, r.exitErr)
		}
	}
	var orphans []liveWorker
	if _, err := pollFor(2*testTTL+2*time.Second, func() bool {
		leaders := currentLeaders(c.lines(), 250*time.Millisecond)
		orphans = orphans[:0]
		for _, w := range c.liveWorkers() {
			if l, ok := leaders[w.queue]; !ok || l.node != w.node || l.term != w.term {
				orphans = append(orphans, w)
			}
		}
		return len(orphans) == 0
	}); err != nil {
		t.Errorf("orphan workers (not of their queue's current leader and term): %+v", orphans)
	}

	for _, r := range m.reps {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, r := range m.reps {
		if code := r.wait(hangTimeout); code != 0 {
			t.Errorf("replica %s exited %d after SIGTERM", r.node, code)
		}
	}
	var left []liveWorker
	if _, err := pollFor(5*time.Second, func() bool {
		left = c.liveWorkers()
		return len(left) == 0
	}); err != nil {
		t.Errorf("workers alive after every replica stopped: %+v", left)
	}

	rep := observer.Check(c.lines(), overlapTol)
	t.Logf("observer: %d lines, %d terms, max overlap %s (timer resolution: worker tick %s)",
		rep.Lines, countTerms(rep), rep.MaxOverlap, workerTick)
	if !rep.OK() {
		t.Fatalf("safety violated:\n%s", rep)
	}

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
