package pgbackend

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/election/electiontest"
	"github.com/regentd/regent/internal/testenv"
)

// An administrator ending the lock connection ends every leadership and
// the session at once, and a follower that gets the lock at once still
// waits out the old lease on the server's clock before it leads.
func TestAdminKillThenWaitOutLease(t *testing.T) {
	url := testenv.NewDatabase(t)
	cluster := randomName("c")
	a := openBackend(t, url, testOpts(cluster, "a"))
	b := openBackend(t, url, testOpts(cluster, "b"))
	admin := rawConn(t, url)

	l1 := mustCampaign(t, a, "q1", nil)
	l2 := mustCampaign(t, a, "q2", nil)
	mustCampaign(t, b, "q3", nil)
	waitQ3 := campaignAsync(t, testCtx(t), a, "q3", nil) // a candidacy waiting on the same session
	chB := campaignAsync(t, testCtx(t), b, "q1", nil)

	killed := time.Now()
	var ok bool
	if err := admin.QueryRow(testCtx(t), `SELECT pg_terminate_backend($1)`, a.LockPID()).Scan(&ok); err != nil || !ok {
		t.Fatalf("terminate: %v %v", ok, err)
	}
	for _, ch := range []<-chan struct{}{l1.Done(), l2.Done(), a.Done()} {
		select {
		case <-ch:
		case <-time.After(time.Second):
			t.Fatal("Done not closed within 1s of the session's end")
		}
	}
	t.Logf("leadership lost %s after the kill", time.Since(killed))
	if r := waitResult(t, waitQ3, time.Second); !errors.Is(r.err, election.ErrSessionLost) {
		t.Fatalf("pending campaign: %v", r.err)
	}
	if _, err := a.Leader(testCtx(t), "q1"); !errors.Is(err, election.ErrSessionLost) {
		t.Fatalf("call after session lost: %v", err)
	}

	// The old lease still runs on the server: b holds the lock but must
	// not lead before it expires.
	var expires time.Time
	if err := admin.QueryRow(testCtx(t),
		`SELECT `+leaseExpiryL+` FROM regent_leaders l WHERE cluster = $1 AND queue = 'q1'`, cluster).Scan(&expires); err != nil {
		t.Fatal(err)
	}
	r := waitResult(t, chB, 10*time.Second)
	if r.err != nil {
		t.Fatal(r.err)
	}
	rec, err := b.Leader(testCtx(t), "q1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.ElectedAt.Before(expires) {
		t.Fatalf("b elected at %s, before the old lease expired at %s", rec.ElectedAt, expires)
	}
	if rec.Term != l1.Term()+1 || r.lead.Term() != rec.Term {
		t.Fatalf("term %d / %d after %d", rec.Term, r.lead.Term(), l1.Term())
	}
	t.Logf("b led %s after the old lease's expiry, %s after the kill", rec.ElectedAt.Sub(expires), r.at.Sub(killed))

	if err := a.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Leaders(testCtx(t)); !errors.Is(err, election.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// A follower finds the lock held by a session whose lease has expired
// (a leader cut off behind a proxy): it ends that session and leads.
func TestStaleSessionTakeover(t *testing.T) {
	url := testenv.NewDatabase(t)
	cluster := randomName("c")
	b := openBackend(t, url, testOpts(cluster, "b")) // migrates
	stale := rawConn(t, url)
	admin := rawConn(t, url)
	ctx := testCtx(t)
	if _, err := stale.Exec(ctx, `SELECT pg_advisory_lock($1)`, LockKey(cluster, "q")); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, `
INSERT INTO regent_leaders (cluster, queue, node, host, pid, term, elected_at, expires_at, lock_pid, released)
VALUES ($1, 'q', 'ghost', 'h', 1, 41, now() - interval '1 minute', now() + interval '1 s', $2, false)`,
		cluster, stale.PgConn().PID()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	l := mustCampaign(t, b, "q", nil)
	took := time.Since(start)
	if l.Term() != 42 {
		t.Fatalf("term %d, want 42", l.Term())
	}
	// The lease ran 1 s more; b waits that, plus the grace, plus a retry.
	if took < 900*time.Millisecond || took > 5*time.Second {
		t.Fatalf("took %s", took)
	}
	if err := stale.Ping(ctx); err == nil {
		t.Fatal("stale session still alive")
	}
	var n int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, stale.PgConn().PID()).Scan(&n); err != nil || n != 0 {
		t.Fatalf("stale backend still listed: %d %v", n, err)
	}
}

// A session that holds the lock without a lease of its own (not the pid
// the lease records) is never terminated.
func TestStaleLeaseOtherHolderNotKilled(t *testing.T) {
	url := testenv.NewDatabase(t)
	cluster := randomName("c")
	b := openBackend(t, url, testOpts(cluster, "b"))
	holder := rawConn(t, url)
	admin := rawConn(t, url)
	ctx := testCtx(t)
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_lock($1)`, LockKey(cluster, "q")); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, `
INSERT INTO regent_leaders (cluster, queue, node, term, elected_at, expires_at, lock_pid, released)
VALUES ($1, 'q', 'ghost', 3, now(), now() - interval '1 minute', $2, false)`, cluster, admin.PgConn().PID()); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	if l, err := b.Campaign(cctx, "q", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("campaign: %v %v", l, err)
	}
	if err := holder.Ping(ctx); err != nil {
		t.Fatalf("lock holder was killed: %v", err)
	}
	if err := admin.Ping(ctx); err != nil {
		t.Fatalf("lease pid was killed: %v", err)
	}
	// Once the holder lets go, b leads at once (the lease has expired).
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_unlock($1)`, LockKey(cluster, "q")); err != nil {
		t.Fatal(err)
	}
	l := mustCampaign(t, b, "q", nil)
	if l.Term() != 4 {
		t.Fatalf("term %d", l.Term())
	}
}

// ReleaseTerm by a guard ends the live leadership at its next renewal and
// wakes the follower at once.
func TestReleaseTermEndsLeadership(t *testing.T) {
	url := testenv.NewDatabase(t)
	cluster := randomName("c")
	a := openBackend(t, url, testOpts(cluster, "a"))
	b := openBackend(t, url, testOpts(cluster, "b"))
	ro := testOpts(cluster, "")
	ro.ReadOnly = true
	guard := openBackend(t, url, ro)

	l := mustCampaign(t, a, "q", nil)
	ch := campaignAsync(t, testCtx(t), b, "q", nil)
	if err := guard.ReleaseTerm(testCtx(t), "q", l.Term()+7); err != nil {
		t.Fatal(err)
	}
	if _, err := guard.Leader(testCtx(t), "q"); err != nil {
		t.Fatalf("wrong term released the record: %v", err)
	}
	start := time.Now()
	if err := guard.ReleaseTerm(testCtx(t), "q", l.Term()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("leadership not lost after its term was released")
	}
	r := waitResult(t, ch, 5*time.Second)
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("lost after %s, follower led after %s", time.Since(start), r.at.Sub(start))
	if r.lead.Term() != l.Term()+1 {
		t.Fatalf("term %d", r.lead.Term())
	}
}

// A renewal that cannot get through (the session's lease row is locked)
// does not stop the deadline: Done closes at ValidUntil while the statement hangs.
func TestDeadlineWhileRenewalBlocked(t *testing.T) {
	url := testenv.NewDatabase(t)
	cluster := randomName("c")
	opts := testOpts(cluster, "a")
	opts.LeaseTTL = time.Second
	opts.RenewInterval = 200 * time.Millisecond
	a := openBackendCfg(t, Config{URL: url, StatementTimeout: 3 * time.Second}, opts)
	l := mustCampaign(t, a, "q", nil)
	eventually(t, 2*time.Second, "a renewal", func() bool {
		select {
		case <-l.Renewed():
			return true
		default:
			return false
		}
	})

	blocker := rawConn(t, url)
	ctx := testCtx(t)
	tx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, `SELECT 1 FROM regent_sessions WHERE cluster = $1 FOR UPDATE`, cluster); err != nil {
		t.Fatal(err)
	}
	valid := l.ValidUntil()
	select {
	case <-l.Done():
	case <-time.After(time.Until(valid) + 300*time.Millisecond):
		t.Fatalf("Done still open %s after ValidUntil", time.Since(valid))
	}
	if late := time.Since(valid); late < 0 {
		t.Fatalf("Done closed %s before ValidUntil", -late)
	}
	if err := l.Publish(ctx, []byte(`{}`)); !errors.Is(err, election.ErrNotLeader) {
		t.Fatalf("publish after deadline: %v", err)
	}
}

// A leader frozen with SIGSTOP keeps its session, and so the queue's lock:
// the follower must end that session once the lease is stale. Its retry
// interval is far longer than the test, so only the wake-up at the moment
// the lease becomes stale, which the try-lock round reports, can explain a
// takeover within the grace (plus slack) of the lease's expiry.
func TestFrozenLeaderTakeoverWhenStale(t *testing.T) {
	url := testenv.NewDatabase(t)
	cluster := randomName("c")
	opts := testOpts(cluster, "b")
	opts.LeaseTTL = electiontest.LeaseTTL
	opts.RenewInterval = electiontest.RenewInterval
	opts.RetryInterval = 10 * time.Minute
	b := openBackend(t, url, opts) // migrates
	grace := b.s.staleGrace
	h, oldTerm := electiontest.StartHolder(t, []string{envHolderURL + "=" + url}, cluster, "holder", "q")
	admin := rawConn(t, url)
	ctx := testCtx(t)
	var lockPID int32
	if err := admin.QueryRow(ctx, `SELECT lock_pid FROM regent_leaders WHERE cluster = $1 AND queue = 'q'`,
		cluster).Scan(&lockPID); err != nil {
		t.Fatal(err)
	}

	// b tries at once, is refused, and learns when the lease would be stale.
	ch := campaignAsync(t, ctx, b, "q", nil)
	h.Signal(syscall.SIGSTOP)
	frozen := time.Now()
	t.Logf("holder %d (session %d, term %d) frozen", h.PID(), lockPID, oldTerm)

	// The slack covers scheduling on a loaded machine; it is far below
	// the retry interval.
	const slack = time.Second
	var r campaignResultT
	select {
	case r = <-ch:
	case <-time.After(electiontest.LeaseTTL + grace + slack):
		t.Fatalf("no takeover within %s of the freeze (lease TTL %s, grace %s, retry interval %s)",
			time.Since(frozen), electiontest.LeaseTTL, grace, opts.RetryInterval)
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.lead.Term() != oldTerm+1 {
		t.Fatalf("term %d after %d", r.lead.Term(), oldTerm)
	}
	hist, err := b.History(ctx, "q", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 || hist[1].Term != oldTerm || hist[1].EndReason != election.EndExpiry || hist[1].To.IsZero() {
		t.Fatalf("history %+v", hist)
	}
	expiry := hist[1].To
	t.Logf("b led %s after the freeze, %s after the old lease's expiry (grace %s)",
		r.at.Sub(frozen), r.at.Sub(expiry), grace)
	// Safety: never before the old lease expired, plus the grace (the
	// session was ended, not freed by the server).
	if hist[0].From.Before(expiry.Add(grace)) {
		t.Fatalf("b elected at %s, before the old lease's expiry %s plus the grace %s", hist[0].From, expiry, grace)
	}
	if late := r.at.Sub(expiry); late > grace+slack {
		t.Fatalf("b led %s after the old lease's expiry: more than grace %s + slack %s", late, grace, slack)
	}
	var n int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, lockPID).Scan(&n); err != nil || n != 0 {
		t.Fatalf("frozen leader's session still listed: %d %v", n, err)
	}
}

// A replica inheriting a dead replica's many queues takes them over in a
// few statements, not one per queue: every queue gets the next term, with
// the old term's history row closed and the new one opened, and the new
// records are written by at most a few transactions (xmin).
func TestTakeoverManyQueuesInFewStatements(t *testing.T) {
	const queues = 300
	url := testenv.NewDatabase(t)
	cluster := randomName("c")
	a := openBackend(t, url, testOpts(cluster, "a"))
	b := openBackend(t, url, testOpts(cluster, "b"))
	admin := rawConn(t, url)

	names := make([]string, queues)
	terms := map[string]int64{}
	for i := range names {
		names[i] = fmt.Sprintf("q%03d", i)
		terms[names[i]] = mustCampaign(t, a, names[i], []byte(`{"n":1}`)).Term()
	}
	results := make([]<-chan campaignResultT, queues)
	for i, q := range names {
		results[i] = campaignAsync(t, testCtx(t), b, q, []byte(`{"n":2}`))
	}
	var ok bool
	if err := admin.QueryRow(testCtx(t), `SELECT pg_terminate_backend($1)`, a.LockPID()).Scan(&ok); err != nil || !ok {
		t.Fatalf("terminate: %v %v", ok, err)
	}
	for i, q := range names {
		r := waitResult(t, results[i], 15*time.Second)
		if r.err != nil {
			t.Fatalf("%s: %v", q, r.err)
		}
		if r.lead.Term() != terms[q]+1 {
			t.Errorf("%s: term %d after %d", q, r.lead.Term(), terms[q])
		}
	}
	var txns int
	if err := admin.QueryRow(testCtx(t),
		`SELECT count(DISTINCT xmin::text) FROM regent_leaders WHERE cluster = $1 AND node = 'b'`, cluster).Scan(&txns); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d queues taken over in %d statements", queues, txns)
	if max := 2 * ((queues + takeoverBatch - 1) / takeoverBatch); txns > max {
		t.Errorf("%d queues taken over in %d statements; want at most %d (batches of %d)", queues, txns, max, takeoverBatch)
	}
	for _, q := range []string{names[0], names[queues/2], names[queues-1]} {
		h, err := b.History(testCtx(t), q, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != 2 || h[0].Node != "b" || h[0].Term != terms[q]+1 || h[1].Term != terms[q] || h[1].EndReason == "" {
			t.Errorf("%s: history %+v; want b's term %d over a's term %d, ended", q, h, terms[q]+1, terms[q])
		}
	}
}

// A burst of notifications is handled as a whole: 1,000 "released"
// notices for a queue this replica leads (each asks for an early
// renewal, to find out whether its own record was released) cost a few
// renewals, not one each.
func TestNoticeBurstCoalesced(t *testing.T) {
	url := testenv.NewDatabase(t)
	cluster := randomName("c")
	a := openBackend(t, url, testOpts(cluster, "a"))
	admin := rawConn(t, url)
	mustCampaign(t, a, "q1", nil)

	before := a.renewals.Load()
	// Distinct payloads: Postgres folds identical notifications of one
	// transaction into one.
	if _, err := admin.Exec(testCtx(t), `SELECT count(pg_notify($1, json_build_object('cluster', $2::text, 'queue', 'q1', 'kind', $3::text, 'n', i)::text))
		FROM generate_series(1, 1000) AS i`, NotifyChannel, cluster, kindReleased); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the timer alone renews every 300 ms here: about 7
	n := a.renewals.Load() - before
	t.Logf("%d renewals in the 2 s after 1,000 notices", n)
	if n > 50 {
		t.Errorf("%d renewals in the 2 s after 1,000 notices; want them coalesced (about 7 from the timer)", n)
	}
}

// A follower frozen while it holds a queue's lock and waits out the
// lease of a leader whose session ended uncleanly keeps that lock (its
// session stays open on the server): a third replica must end the
// follower's session once the follower's own session lease is stale, and
// lead. The follower renewed at most a renewal interval before the
// freeze, so the bound is the TTL plus the grace from the freeze (plus
// slack for scheduling), and never before the old leader's lease expired.
func TestFrozenFollowerHoldingLockEnded(t *testing.T) {
	url := testenv.NewDatabase(t)
	cluster := randomName("c")
	opts := func(node string) election.Options {
		o := testOpts(cluster, node)
		o.LeaseTTL = 2 * time.Second
		o.RenewInterval = 400 * time.Millisecond
		return o
	}
	a := openBackend(t, url, opts("a"))
	b := openBackend(t, url, opts("b"))
	c := openBackend(t, url, opts("c"))
	admin := rawConn(t, url)
	ctx := testCtx(t)
	grace := c.s.staleGrace

	la := mustCampaign(t, a, "q", nil)
	chB := campaignAsync(t, ctx, b, "q", nil)
	// The unclean end: a's session is ended while its lease runs (a
	// leader SIGKILLed with its guards, as the server sees it).
	var ok bool
	if err := admin.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, a.LockPID()).Scan(&ok); err != nil || !ok {
		t.Fatalf("terminate: %v %v", ok, err)
	}
	<-la.Done()
	eventually(t, 5*time.Second, "b holding the lock", func() bool {
		return lockHolder(t, admin, cluster, "q") == int32(b.LockPID())
	})
	release, state := holdActor(t, b, func(a *actor) string {
		q := a.queues["q"]
		if q == nil || !q.locked || q.lead != nil {
			return "not waiting with the lock"
		}
		return ""
	})
	frozen := time.Now()
	if state != "" {
		t.Fatalf("b when frozen: %s", state)
	}
	var expires time.Time
	if err := admin.QueryRow(ctx,
		`SELECT `+leaseExpiryL+` FROM regent_leaders l WHERE cluster = $1 AND queue = 'q'`, cluster).Scan(&expires); err != nil {
		t.Fatal(err)
	}
	t.Logf("b (session %d) frozen holding the lock; a's lease expires at %s", b.LockPID(), expires.Format("15:04:05.000"))

	chC := campaignAsync(t, ctx, c, "q", nil)
	const slack = time.Second
	bound := opts("c").LeaseTTL + grace + slack
	var r campaignResultT
	select {
	case r = <-chC:
	case <-time.After(bound):
		t.Fatalf("c did not lead within %s of b's freeze (TTL %s, grace %s, slack %s); lock held by %d",
			time.Since(frozen), opts("c").LeaseTTL, grace, slack, lockHolder(t, admin, cluster, "q"))
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("c led %s after b's freeze, term %d", r.at.Sub(frozen), r.lead.Term())
	if r.lead.Term() != la.Term()+1 {
		t.Errorf("term %d after %d", r.lead.Term(), la.Term())
	}
	rec, err := c.Leader(ctx, "q")
	if err != nil || rec.Node != "c" {
		t.Fatalf("record %+v, %v", rec, err)
	}
	if rec.ElectedAt.Before(expires) {
		t.Errorf("c elected at %s, before a's lease expired at %s", rec.ElectedAt, expires)
	}
	var n int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, b.LockPID()).Scan(&n); err != nil || n != 0 {
		t.Errorf("frozen follower's session still listed: %d %v", n, err)
	}
	// Thawed, b finds its session ended.
	release()
	if r := waitResult(t, chB, 5*time.Second); !errors.Is(r.err, election.ErrSessionLost) {
		t.Errorf("b's campaign after the thaw: %v, %v; want the session lost", r.lead, r.err)
	}
}

// A session that holds a queue's lock while no leadership is in force (no
// record, a released one, or a stale lease of another session) is ended
// once its own session lease is stale, never before: a replica frozen
// after it took the lock and before it recorded itself keeps the queue
// no longer than a frozen leader would.
func TestStaleLockHolderWithoutLeadershipEnded(t *testing.T) {
	for _, tc := range []struct {
		name   string
		record string // inserts the record of queue 'q' ($1 cluster, $2 a pid not holding the lock), if any
		term   int64  // the term b gets
	}{
		{name: "no record", term: 1},
		{name: "released record", term: 8, record: `
INSERT INTO regent_leaders (cluster, queue, node, term, elected_at, expires_at, lock_pid, released)
VALUES ($1, 'q', 'gone', 7, now() - interval '1 minute', now() - interval '1 s', $2, true)`},
		{name: "stale record", term: 4, record: `
INSERT INTO regent_leaders (cluster, queue, node, term, elected_at, expires_at, lock_pid, released)
VALUES ($1, 'q', 'dead', 3, now() - interval '1 minute', now() - interval '1 minute', $2, false)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := testenv.NewDatabase(t)
			cluster := randomName("c")
			b := openBackend(t, url, testOpts(cluster, "b")) // migrates
			holder := rawConn(t, url)
			admin := rawConn(t, url)
			ctx := testCtx(t)
			const holderLease = time.Second
			if _, err := holder.Exec(ctx, `SELECT pg_advisory_lock($1)`, LockKey(cluster, "q")); err != nil {
				t.Fatal(err)
			}
			var leaseEnd time.Time
			if err := admin.QueryRow(ctx, `
INSERT INTO regent_sessions (cluster, pid, node, renewed_at, expires_at)
VALUES ($1, $2, 'frozen', now(), now() + $3 * interval '1 microsecond') RETURNING expires_at`,
				cluster, holder.PgConn().PID(), holderLease.Microseconds()).Scan(&leaseEnd); err != nil {
				t.Fatal(err)
			}
			if tc.record != "" {
				if _, err := admin.Exec(ctx, tc.record, cluster, admin.PgConn().PID()); err != nil {
					t.Fatal(err)
				}
			}
			const slack = time.Second
			bound := holderLease + b.s.staleGrace + slack
			start := time.Now()
			cctx, cancel := context.WithTimeout(ctx, bound)
			defer cancel()
			l, err := b.Campaign(cctx, "q", nil)
			took := time.Since(start)
			if err != nil {
				t.Fatalf("b did not lead within %s (the holder's lease %s + grace %s + slack %s): %v",
					took, holderLease, b.s.staleGrace, slack, err)
			}
			t.Logf("b led after %s (holder's lease %s, grace %s)", took, holderLease, b.s.staleGrace)
			if l.Term() != tc.term {
				t.Errorf("term %d, want %d", l.Term(), tc.term)
			}
			rec, err := b.Leader(ctx, "q")
			if err != nil {
				t.Fatal(err)
			}
			if rec.ElectedAt.Before(leaseEnd.Add(b.s.staleGrace)) {
				t.Errorf("b elected at %s, before the holder's lease %s plus the grace %s", rec.ElectedAt, leaseEnd, b.s.staleGrace)
			}
			if err := holder.Ping(ctx); err == nil {
				t.Error("the stale holder's session is still alive")
			}
		})
	}
}
