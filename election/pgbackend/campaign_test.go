package pgbackend

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/internal/testenv"
)

func TestCampaignResignHandover(t *testing.T) {
	url := testenv.NewDatabase(t)
	cluster := randomName("c")
	a := openBackend(t, url, testOpts(cluster, "a"))
	b := openBackend(t, url, testOpts(cluster, "b"))

	la := mustCampaign(t, a, "q", []byte(`{"x": 1,  "y":[1,2]}`))
	if la.Term() < 1 {
		t.Fatalf("term %d", la.Term())
	}
	rec, err := b.Leader(testCtx(t), "q")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Node != "a" || rec.Term != la.Term() || string(rec.Payload) != `{"x": 1,  "y":[1,2]}` {
		t.Fatalf("record %+v payload %s", rec, rec.Payload)
	}

	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	ch := campaignAsync(t, ctx, b, "q", nil)
	select {
	case r := <-ch:
		t.Fatalf("b won while a leads: %+v", r)
	case <-time.After(3 * testOpts("", "").RetryInterval):
	}
	start := time.Now()
	if err := la.Resign(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if !closed(la.Done()) {
		t.Fatal("Done open after Resign")
	}
	r := waitResult(t, ch, 5*time.Second)
	if r.err != nil {
		t.Fatal(r.err)
	}
	took := r.at.Sub(start)
	t.Logf("handover took %s", took)
	if took > 150*time.Millisecond {
		t.Errorf("graceful handover took %s, want a NOTIFY wake-up (< 150ms)", took)
	}
	if r.lead.Term() != la.Term()+1 {
		t.Fatalf("term %d after %d", r.lead.Term(), la.Term())
	}
	if err := la.Resign(testCtx(t)); err != nil {
		t.Fatalf("second resign: %v", err)
	}
	if err := la.Publish(testCtx(t), []byte(`{}`)); !errors.Is(err, election.ErrNotLeader) {
		t.Fatalf("publish after resign: %v", err)
	}
	rec, err = a.Leader(testCtx(t), "q")
	if err != nil || rec.Node != "b" || rec.Payload != nil {
		t.Fatalf("record %+v, %v", rec, err)
	}
}

// A campaign withdrawn while the actor is busy (a long statement, a large
// batch) never wins later. Campaign gives up waiting for the withdrawal
// after a statement timeout and returns; the actor, busy longer than
// that, must still not take the queue for nobody once it is free: the
// record would name b with no worker running, b's session would renew it,
// and no other replica could take the queue.
func TestWithdrawnCampaignNeverWins(t *testing.T) {
	url := testenv.NewDatabase(t)
	cluster := randomName("c")
	a := openBackend(t, url, testOpts(cluster, "a"))
	b := openBackendCfg(t, Config{URL: url, StatementTimeout: 500 * time.Millisecond}, testOpts(cluster, "b"))
	c := openBackend(t, url, testOpts(cluster, "c"))
	ctx := testCtx(t)
	la := mustCampaign(t, a, "q", nil)

	bctx, withdraw := context.WithCancel(ctx)
	chB := campaignAsync(t, bctx, b, "q", nil)
	eventually(t, 5*time.Second, "b's candidacy", func() bool {
		n := 0
		err := b.act.call(ctx, func(a *actor) error {
			if q := a.queues["q"]; q != nil {
				n = len(q.waiters)
			}
			return nil
		})
		return err == nil && n == 1
	})

	release, _ := holdActor(t, b, nil)
	withdraw()
	r := waitResult(t, chB, 5*time.Second)
	if !errors.Is(r.err, context.Canceled) || r.lead != nil {
		t.Fatalf("withdrawn campaign: %v, %v", r.lead, r.err)
	}
	// The queue is freed while b is still busy, then b goes on: its held
	// round ends with a tick (lock attempts, takeovers), and a call waits
	// for the round after it.
	if err := la.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	release()
	if err := b.act.call(ctx, func(*actor) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if rec, err := c.Leader(ctx, "q"); !errors.Is(err, election.ErrNoLeader) {
		t.Errorf("after b's campaign was withdrawn: leader %s term %d, %v; want no leader", rec.Node, rec.Term, err)
	}
	if pid := lockHolder(t, rawConn(t, url), cluster, "q"); pid != 0 {
		t.Errorf("lock held by session %d (b's is %d) after b's campaign was withdrawn", pid, b.LockPID())
	}

	// Another replica takes the queue at once.
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	lc, err := c.Campaign(cctx, "q", nil)
	if err != nil {
		t.Fatalf("c could not take the queue: %v after %s", err, time.Since(start))
	}
	t.Logf("c led after %s, term %d", time.Since(start), lc.Term())
	if lc.Term() != la.Term()+1 {
		t.Errorf("term %d after %d: a withdrawn campaign held a term in between", lc.Term(), la.Term())
	}
}

// A campaign withdrawn while its takeover statement runs (held here by a
// row lock on the record) is not handed the leadership: the actor
// resigns it as soon as the statement returns, so the queue is released
// and another replica leads at once.
func TestCampaignWithdrawnDuringTakeover(t *testing.T) {
	url := testenv.NewDatabase(t)
	cluster := randomName("c")
	a := openBackend(t, url, testOpts(cluster, "a"))
	b := openBackendCfg(t, Config{URL: url, StatementTimeout: 10 * time.Second}, testOpts(cluster, "b"))
	c := openBackend(t, url, testOpts(cluster, "c"))
	admin := rawConn(t, url)
	ctx := testCtx(t)
	la := mustCampaign(t, a, "q", nil)
	if err := la.Resign(ctx); err != nil {
		t.Fatal(err)
	}

	blocker := rawConn(t, url)
	tx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, `SELECT 1 FROM regent_leaders WHERE cluster = $1 AND queue = 'q' FOR UPDATE`, cluster); err != nil {
		t.Fatal(err)
	}
	bctx, withdraw := context.WithCancel(ctx)
	chB := campaignAsync(t, bctx, b, "q", nil)
	eventually(t, 5*time.Second, "b's takeover waiting for the row lock", func() bool {
		var waiting bool
		err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock')`,
			b.LockPID()).Scan(&waiting)
		return err == nil && waiting
	})
	withdraw()
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	r := waitResult(t, chB, 5*time.Second)
	if !errors.Is(r.err, context.Canceled) || r.lead != nil {
		t.Fatalf("withdrawn campaign: %v, %v", r.lead, r.err)
	}
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	lc, err := c.Campaign(cctx, "q", nil)
	if err != nil {
		t.Fatalf("c could not take the queue: %v after %s", err, time.Since(start))
	}
	t.Logf("c led after %s, term %d", time.Since(start), lc.Term())
	h, err := c.History(ctx, "q", 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 3 || h[1].Node != "b" || h[1].EndReason != election.EndResign {
		t.Fatalf("history %+v; want b's term resigned between a's and c's", h)
	}
}
