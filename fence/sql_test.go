package fence_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/regentd/regent/fence"
	"github.com/regentd/regent/internal/testenv"
)

func TestFirstClaim(t *testing.T) {
	u := installed(t, 0)
	ctx := testCtx(t)
	c := connect(t, u)
	tx := begin(t, c)
	mustClaim(t, tx, "emails", 3, "prod")
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := fence.Rows(ctx, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Key != "emails" || rows[0].Term != 3 || rows[0].Owner != "prod" ||
		rows[0].OwnerSince.IsZero() || !rows[0].At.Equal(rows[0].OwnerSince) {
		t.Fatalf("rows = %+v", rows)
	}
	if rows, err := fence.Rows(ctx, c, []string{"other"}); err != nil || len(rows) != 0 {
		t.Fatalf("rows of other = %+v, %v", rows, err)
	}
}

func TestConcurrentFirstClaims(t *testing.T) {
	u := installed(t, 0)
	a, b := connect(t, u), connect(t, u)
	ta, tb := begin(t, a), begin(t, b)
	mustClaim(t, ta, "k", 1, "o")
	ch := claimAsync(testCtx(t), tb, "k", 1, "o") // waits for a's insert
	waitLockWait(t, connect(t, u), pid(b))
	if err := ta.Commit(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if r := await(t, ch, 10*time.Second); r.err != nil || r.term != 1 {
		t.Fatalf("second first claim: %d %v", r.term, r.err)
	}
}

func TestSameTermDoesNotWait(t *testing.T) {
	u := installed(t, 0)
	seed(t, u, "k", 5, "o")
	a, b := connect(t, u), connect(t, u)
	ta, tb := begin(t, a), begin(t, b)
	mustClaim(t, ta, "k", 5, "o")
	// b's claim returns while a's transaction is open: the same term
	// takes a shared lock (a bounded context proves it does not wait).
	ctx, cancel := context.WithTimeout(testCtx(t), 5*time.Second)
	defer cancel()
	if got, err := claimSQL(ctx, tb, "k", 5, "o"); err != nil || got != 5 {
		t.Fatalf("same-term claim: %d %v", got, err)
	}
	var locks int
	if err := connect(t, u).QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND pid = ANY($1)`,
		[]int64{int64(pid(a)), int64(pid(b))}).Scan(&locks); err != nil || locks != 4 {
		t.Fatalf("advisory locks of both sessions = %d, %v; want 4", locks, err)
	}
}

// TestOrdering: a term-T transaction that began first commits before the
// term-T+1 transaction can claim, and a term-T claim started after the
// move fails.
func TestOrdering(t *testing.T) {
	u := installed(t, 0)
	seed(t, u, "k", 7, "o")
	admin := connect(t, u)
	old, mover, late := connect(t, u), connect(t, u), connect(t, u)
	tOld := begin(t, old)
	mustClaim(t, tOld, "k", 7, "o")

	tMover := begin(t, mover)
	ch := claimAsync(testCtx(t), tMover, "k", 8, "o")
	waitLockWait(t, admin, pid(mover))
	notYet(t, ch)
	if _, err := tOld.Exec(testCtx(t), `SELECT 1`); err != nil { // the old term still works
		t.Fatal(err)
	}
	committed := time.Now()
	if err := tOld.Commit(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	r := await(t, ch, 10*time.Second)
	if r.err != nil || r.term != 8 {
		t.Fatalf("mover: %d %v", r.term, r.err)
	}
	if r.at.Before(committed) {
		t.Fatal("mover passed before the old term committed")
	}

	// A term-7 claim after the move waits for the mover and is refused
	// once it commits.
	tLate := begin(t, late)
	chLate := claimAsync(testCtx(t), tLate, "k", 7, "o")
	waitLockWait(t, admin, pid(late))
	if err := tMover.Commit(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	rl := await(t, chLate, 10*time.Second)
	code, msg := pgCode(rl.err)
	if code != fence.CodeStaleTerm {
		t.Fatalf("late old-term claim: %v; want %s", rl.err, fence.CodeStaleTerm)
	}
	if want := `regent_fence: stale term 7 for key "k": the resource already accepted term 8`; msg != want {
		t.Fatalf("message %q; want %q", msg, want)
	}
}

func TestStaleAndForeign(t *testing.T) {
	u := installed(t, 0)
	seed(t, u, "emails", 9, "prod")
	c := connect(t, u)
	_, err := claimSQL(testCtx(t), begin(t, c), "emails", 7, "prod")
	if code, msg := pgCode(err); code != fence.CodeStaleTerm ||
		msg != `regent_fence: stale term 7 for key "emails": the resource already accepted term 9` {
		t.Fatalf("stale: %q %q", code, msg)
	}
	// Owner is checked before the term, whatever the term.
	for _, term := range []int64{1, 9, 10} {
		c := connect(t, u)
		_, err := claimSQL(testCtx(t), begin(t, c), "emails", term, "staging")
		code, msg := pgCode(err)
		if code != fence.CodeForeignOwner || !strings.Contains(msg, `foreign owner "staging" for key "emails"`) ||
			!strings.Contains(msg, `belongs to owner "prod" since `) {
			t.Fatalf("foreign owner at term %d: %q %q", term, code, msg)
		}
	}
	// Invalid arguments.
	for _, a := range []struct {
		key   string
		term  int64
		owner string
	}{{"", 1, "o"}, {"k", -1, "o"}, {"k", 1, ""}} {
		c := connect(t, u)
		if _, err := claimSQL(testCtx(t), begin(t, c), a.key, a.term, a.owner); err == nil {
			t.Fatalf("claim %+v passed", a)
		}
	}
	rows, err := fence.Rows(testCtx(t), connect(t, u), nil)
	if err != nil || len(rows) != 1 || rows[0].Term != 9 || rows[0].Owner != "prod" {
		t.Fatalf("rows = %+v, %v", rows, err)
	}
}

// TestStallBound: an old-term transaction that holds the key and does
// nothing blocks the next term only for the stall timeout, then its
// session is ended. Sessions of the mover's own term are never ended.
func TestStallBound(t *testing.T) {
	const stall = 500 * time.Millisecond
	u := installed(t, stall)
	seed(t, u, "k", 1, "o")
	admin := connect(t, u)

	stalled := connect(t, u)
	tStalled := begin(t, stalled)
	mustClaim(t, tStalled, "k", 1, "o") // then "pauses"
	stalledPID := pid(stalled)

	mover, peer := connect(t, u), connect(t, u)
	tMover, tPeer := begin(t, mover), begin(t, peer)
	start := time.Now()
	got, err := claimSQL(testCtx(t), tMover, "k", 2, "o")
	elapsed := time.Since(start)
	if err != nil || got != 2 {
		t.Fatalf("mover: %d %v", got, err)
	}
	if elapsed < stall || elapsed > stall+2*time.Second {
		t.Fatalf("mover took %v; want stall timeout %v plus a little", elapsed, stall)
	}
	t.Logf("mover passed after %v (stall timeout %v)", elapsed, stall)
	var lt string
	if err := tMover.QueryRow(testCtx(t), `SHOW lock_timeout`).Scan(&lt); err != nil || lt != "0" {
		t.Fatalf("lock_timeout after the mover's claim = %q, %v", lt, err)
	}
	if _, err := tStalled.Exec(testCtx(t), `SELECT 1`); err == nil {
		t.Fatal("the stalled old-term session still works")
	}
	var alive bool
	if err := admin.QueryRow(testCtx(t), `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)`, int64(stalledPID)).Scan(&alive); err != nil || alive {
		t.Fatalf("stalled session alive=%v err=%v", alive, err)
	}

	// A peer of term 2 waits for the mover longer than the stall timeout
	// and is not ended: it passes when the mover commits.
	ch := claimAsync(testCtx(t), tPeer, "k", 2, "o")
	waitLockWait(t, admin, pid(peer))
	deadline := time.Now().Add(3 * stall)
	for time.Now().Before(deadline) { // let the stall timeout pass (at least twice)
		select {
		case r := <-ch:
			t.Fatalf("peer returned while the mover holds the key: %d %v", r.term, r.err)
		case <-time.After(deadline.Sub(time.Now())):
		}
	}
	if _, err := tMover.Exec(testCtx(t), `SELECT 1`); err != nil {
		t.Fatalf("mover's session was ended: %v", err)
	}
	if err := tMover.Commit(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if r := await(t, ch, 10*time.Second); r.err != nil || r.term != 2 {
		t.Fatalf("peer: %d %v", r.term, r.err)
	}
	// The claim left the caller's lock_timeout as it was.
	if err := tPeer.QueryRow(testCtx(t), `SHOW lock_timeout`).Scan(&lt); err != nil || lt != "0" {
		t.Fatalf("lock_timeout after claim = %q, %v", lt, err)
	}
}

// TestStallBoundLargeTerms: terms beyond 32 bits are told apart (the
// advisory locks carry both halves).
func TestStallBoundLargeTerms(t *testing.T) {
	const stall = 300 * time.Millisecond
	u := installed(t, stall)
	const base = int64(5)<<32 | 0xfffffff0
	seed(t, u, "k", base, "o")
	stalled := connect(t, u)
	mustClaim(t, begin(t, stalled), "k", base, "o")
	mover := connect(t, u)
	start := time.Now()
	mustClaim(t, begin(t, mover), "k", base+0x20, "o") // crosses into the next high half
	if d := time.Since(start); d > stall+2*time.Second {
		t.Fatalf("mover took %v", d)
	}
	if err := stalled.Ping(testCtx(t)); err == nil {
		t.Fatal("stalled session still alive")
	}
}

func TestTransfer(t *testing.T) {
	u := installed(t, 0)
	seed(t, u, "k", 40, "old")
	c := connect(t, u)
	ctx := testCtx(t)
	if err := fence.Transfer(ctx, c, "k", "new", "alice"); err != nil {
		t.Fatal(err)
	}
	rows, err := fence.Rows(ctx, c, []string{"k"})
	if err != nil || len(rows) != 1 || rows[0].Owner != "new" || rows[0].Term != 0 {
		t.Fatalf("rows after transfer = %+v, %v", rows, err)
	}
	mustCommitClaim(t, u, "k", 1, "new")
	_, err = claimSQL(ctx, begin(t, connect(t, u)), "k", 41, "old")
	if code, _ := pgCode(err); code != fence.CodeForeignOwner {
		t.Fatalf("old owner after transfer: %v", err)
	}
	var n int
	var from, to, by string
	var fromTerm int64
	if err := c.QueryRow(ctx, `SELECT count(*) OVER (), from_owner, from_term, to_owner, by FROM regent_fence.transfers`).Scan(&n, &from, &fromTerm, &to, &by); err != nil ||
		n != 1 || from != "old" || fromTerm != 40 || to != "new" || by != "alice" {
		t.Fatalf("transfer record: %d %s %d %s %s %v", n, from, fromTerm, to, by, err)
	}
	// A transfer to the current owner keeps the term.
	mustCommitClaim(t, u, "k", 5, "new")
	if err := fence.Transfer(ctx, c, "k", "new", "bob"); err != nil {
		t.Fatal(err)
	}
	if rows, _ := fence.Rows(ctx, c, []string{"k"}); rows[0].Term != 5 {
		t.Fatalf("same-owner transfer reset the term: %+v", rows)
	}
	// A transfer of an unknown key sets its owner.
	if err := fence.Transfer(ctx, c, "fresh", "x", "bob"); err != nil {
		t.Fatal(err)
	}
	_, err = claimSQL(ctx, begin(t, connect(t, u)), "fresh", 1, "y")
	if code, _ := pgCode(err); code != fence.CodeForeignOwner {
		t.Fatalf("claim of a pre-assigned key by another owner: %v", err)
	}
}

// TestTransferWaitsForClaims: a transfer waits for the old owner's open
// transactions.
func TestTransferWaitsForClaims(t *testing.T) {
	u := installed(t, 0)
	seed(t, u, "k", 3, "old")
	w := connect(t, u)
	tw := begin(t, w)
	mustClaim(t, tw, "k", 3, "old")
	admin := connect(t, u)
	done := make(chan error, 1)
	tc := connect(t, u)
	go func() { done <- fence.Transfer(testCtx(t), tc, "k", "new", "ops") }()
	waitLockWait(t, admin, pid(tc))
	if err := tw.Commit(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("transfer did not return")
	}
}

func TestRecordRefusal(t *testing.T) {
	u := installed(t, 0)
	seed(t, u, "k", 9, "prod")
	c := connect(t, u)
	ctx := testCtx(t)
	before := time.Now().Add(-time.Minute)
	for _, a := range []struct {
		term  int64
		owner string
	}{{7, "prod"}, {12, "staging"}} {
		if _, err := c.Exec(ctx, `SELECT regent_fence.record_refusal($1, $2, $3, $4)`, "k", a.term, a.owner, "node-1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Exec(ctx, `SELECT regent_fence.record_refusal('unknown', 1, 'x', '')`); err != nil {
		t.Fatal(err)
	}
	refs, err := fence.Refusals(ctx, c, before)
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 2 {
		t.Fatalf("refusals = %+v", refs)
	}
	want := []fence.Refusal{
		{Key: "k", Term: 7, Owner: "prod", Node: "node-1", Code: fence.CodeStaleTerm, CurrentTerm: 9, CurrentOwner: "prod"},
		{Key: "k", Term: 12, Owner: "staging", Node: "node-1", Code: fence.CodeForeignOwner, CurrentTerm: 9, CurrentOwner: "prod"},
	}
	for i, r := range refs {
		at := r.At
		r.At = time.Time{}
		if r != want[i] || at.Before(before) || at.After(time.Now().Add(time.Minute)) {
			t.Fatalf("refusal %d = %+v at %v; want %+v", i, r, at, want[i])
		}
	}
	if refs, err := fence.Refusals(ctx, c, time.Now().Add(time.Hour)); err != nil || len(refs) != 0 {
		t.Fatalf("refusals from the future = %+v, %v", refs, err)
	}
}

func TestRefusalLogBounded(t *testing.T) {
	u := installed(t, 0)
	seed(t, u, "k", 9, "prod")
	c := connect(t, u)
	ctx := testCtx(t)
	if _, err := c.Exec(ctx, `INSERT INTO regent_fence.refusals (at, key, term, owner, node, code, current_term, current_owner)
		SELECT now() - interval '8 days', 'old', 1, 'o', '', 'RF001', 2, 'o'`); err != nil {
		t.Fatal(err)
	}
	for range 1005 {
		if _, err := c.Exec(ctx, `SELECT regent_fence.record_refusal('k', 1, 'prod', 'n')`); err != nil {
			t.Fatal(err)
		}
	}
	var total, old int
	if err := c.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE key = 'old') FROM regent_fence.refusals`).Scan(&total, &old); err != nil {
		t.Fatal(err)
	}
	if total != 1000 || old != 0 {
		t.Fatalf("refusals kept: %d (old %d); want 1000 (0)", total, old)
	}
}

func TestInstallIdempotentAndConcurrent(t *testing.T) {
	u := testenv.NewDatabase(t)
	ctx := testCtx(t)
	errs := make(chan error, 4)
	for range 4 {
		c := connect(t, u)
		go func() { errs <- fence.Install(ctx, c, fence.InstallOptions{}) }()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent install: %v", err)
		}
	}
	seed(t, u, "k", 2, "o")
	c := connect(t, u)
	if err := fence.Install(ctx, c, fence.InstallOptions{StallTimeout: 1500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if err := fence.Install(ctx, c, fence.InstallOptions{}); err != nil { // keeps 1500
		t.Fatal(err)
	}
	var ms int
	if err := c.QueryRow(ctx, `SELECT stall_timeout_ms FROM regent_fence.settings`).Scan(&ms); err != nil || ms != 1500 {
		t.Fatalf("stall_timeout_ms = %d, %v", ms, err)
	}
	if v, err := fence.InstalledVersion(ctx, c); err != nil || v != fence.SchemaVersion {
		t.Fatalf("version = %d, %v", v, err)
	}
	if rows, err := fence.Rows(ctx, c, nil); err != nil || len(rows) != 1 || rows[0].Term != 2 {
		t.Fatalf("rows kept across installs = %+v, %v", rows, err)
	}
	// The printed SQL installs too, through psql's path (simple protocol).
	if _, err := c.Exec(ctx, fence.SQL()); err != nil {
		t.Fatalf("SQL(): %v", err)
	}
	if err := fence.Install(ctx, c, fence.InstallOptions{StallTimeout: time.Microsecond}); err == nil {
		t.Fatal("stall timeout below 1ms accepted")
	}
}

func TestInstallRefusesNewerSchema(t *testing.T) {
	u := installed(t, 0)
	c := connect(t, u)
	ctx := testCtx(t)
	if _, err := c.Exec(ctx, `UPDATE regent_fence.version SET version = 2`); err != nil {
		t.Fatal(err)
	}
	err := fence.Install(ctx, c, fence.InstallOptions{})
	if !errors.Is(err, fence.ErrNewerSchema) || !strings.Contains(err.Error(), "schema version 2 is installed, newer than this package's version 1") {
		t.Fatalf("install over version 2: %v", err)
	}
	if _, err := connect(t, u).Exec(ctx, fence.SQL()); err == nil {
		t.Fatal("SQL() installed over version 2")
	}
	var v int
	if err := connect(t, u).QueryRow(ctx, `SELECT version FROM regent_fence.version`).Scan(&v); err != nil || v != 2 {
		t.Fatalf("version after refused installs = %d, %v", v, err)
	}
}

func TestNotInstalled(t *testing.T) {
	c := connect(t, testenv.NewDatabase(t))
	ctx := testCtx(t)
	if _, err := fence.Rows(ctx, c, nil); !errors.Is(err, fence.ErrNotInstalled) {
		t.Fatalf("Rows: %v", err)
	}
	if _, err := fence.Refusals(ctx, c, time.Time{}); !errors.Is(err, fence.ErrNotInstalled) {
		t.Fatalf("Refusals: %v", err)
	}
	if _, err := fence.InstalledVersion(ctx, c); !errors.Is(err, fence.ErrNotInstalled) {
		t.Fatalf("InstalledVersion: %v", err)
	}
	if err := fence.Transfer(ctx, c, "k", "o", "b"); !errors.Is(err, fence.ErrNotInstalled) {
		t.Fatalf("Transfer: %v", err)
	}
}

// TestWorkerRole: a role with only GrantSQL's grants claims, records
// refusals, and cannot touch the tables or transfer.
func TestWorkerRole(t *testing.T) {
	u := installed(t, 300*time.Millisecond)
	seed(t, u, "k", 1, "o")
	admin := connect(t, u)
	ctx := testCtx(t)
	role := newRole(t, admin, "worker")
	if _, err := admin.Exec(ctx, fence.GrantSQL(role)); err != nil {
		t.Fatalf("grants: %v", err)
	}
	wu := asUser(t, u, role)

	// Claims at the same term, a move that ends a stalled session of the
	// worker role, and a refusal recorded through the helper.
	w1 := connect(t, wu)
	t1 := begin(t, w1)
	mustClaim(t, t1, "k", 1, "o")
	w2 := connect(t, wu)
	t2 := begin(t, w2)
	mustClaim(t, t2, "k", 2, "o")
	if err := t2.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w1.Ping(ctx); err == nil {
		t.Fatal("stalled worker session of term 1 still alive")
	}
	w3 := connect(t, wu)
	tok := fence.Token{Key: "k", Term: 1, Owner: "o", Node: "n1"}
	tx3 := begin(t, w3)
	if _, err := tok.Claim(ctx, tx3); !errors.Is(err, fence.ErrStaleTerm) {
		t.Fatalf("stale claim as worker: %v", err)
	} else if re := (*fence.RefusalError)(nil); errors.As(err, &re) && re.RecordErr != nil {
		t.Fatalf("record as worker: %v", re.RecordErr)
	}
	// Nothing else.
	w4 := connect(t, wu)
	for _, q := range []string{
		`INSERT INTO regent_fence.fence VALUES ('x', 1, 'o', now(), now())`,
		`UPDATE regent_fence.fence SET term = 100`,
		`DELETE FROM regent_fence.refusals`,
		`SELECT * FROM regent_fence.fence`,
		`SELECT regent_fence.transfer('k', 'me', 'me')`,
		`SELECT regent_fence._end_older('k', 100)`,
		`UPDATE regent_fence.settings SET stall_timeout_ms = 1`,
	} {
		_, err := w4.Exec(ctx, q)
		if code, _ := pgCode(err); code != "42501" {
			t.Fatalf("%s as worker: %v; want permission denied", q, err)
		}
	}
	refs, err := fence.Refusals(ctx, admin, time.Time{})
	if err != nil || len(refs) != 1 || refs[0].Node != "n1" {
		t.Fatalf("refusals = %+v, %v", refs, err)
	}
}

// seed records key at term for owner (a committed claim).
func seed(t *testing.T, u, key string, term int64, owner string) {
	t.Helper()
	mustCommitClaim(t, u, key, term, owner)
}

func mustCommitClaim(t *testing.T, u, key string, term int64, owner string) {
	t.Helper()
	c, err := pgx.Connect(testCtx(t), u)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	tx := begin(t, c)
	mustClaim(t, tx, key, term, owner)
	if err := tx.Commit(testCtx(t)); err != nil {
		t.Fatal(err)
	}
}

// TestStallBoundNeedsSignalRole: with a non-superuser installer, the stall
// bound needs pg_signal_backend; without it the mover fails with 55P03
// and a hint naming the privilege.
func TestStallBoundNeedsSignalRole(t *testing.T) {
	const stall = 200 * time.Millisecond
	u := testenv.NewDatabase(t)
	admin := connect(t, u)
	ctx := testCtx(t)
	installer := newRole(t, admin, "installer")
	worker := newRole(t, admin, "worker")
	var db string
	if err := admin.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, `GRANT CREATE ON DATABASE `+pgx.Identifier{db}.Sanitize()+` TO `+pgx.Identifier{installer}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	inst := connect(t, asUser(t, u, installer))
	if err := fence.Install(ctx, inst, fence.InstallOptions{StallTimeout: stall}); err != nil {
		t.Fatalf("install as %s: %v", installer, err)
	}
	if _, err := inst.Exec(ctx, fence.GrantSQL(worker)); err != nil {
		t.Fatal(err)
	}
	wu := asUser(t, u, worker)
	seed(t, wu, "k", 1, "o")

	stalled := connect(t, wu)
	mustClaim(t, begin(t, stalled), "k", 1, "o")
	_, err := claimSQL(ctx, begin(t, connect(t, wu)), "k", 2, "o")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "55P03" || !strings.Contains(pe.Hint, "pg_signal_backend") {
		t.Fatalf("move without pg_signal_backend: %v (%+v)", err, pe)
	}

	if _, err := admin.Exec(ctx, `GRANT pg_signal_backend TO `+pgx.Identifier{installer}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	mustClaim(t, begin(t, connect(t, wu)), "k", 2, "o")
	if err := stalled.Ping(ctx); err == nil {
		t.Fatal("stalled session still alive")
	}
}

// newRole creates a login role named after the test, dropped (with what it
// owns in this database) at the end of the test.
func newRole(t *testing.T, admin *pgx.Conn, what string) string {
	t.Helper()
	role := fmt.Sprintf("regent_fence_%s_%d", what, time.Now().UnixNano())
	ident := pgx.Identifier{role}.Sanitize()
	if _, err := admin.Exec(testCtx(t), `CREATE ROLE `+ident+` LOGIN NOSUPERUSER`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, role)
		if _, err := admin.Exec(ctx, `DROP OWNED BY `+ident+` CASCADE; DROP ROLE `+ident); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
	return role
}

// TestRepeatableRead: in REPEATABLE READ a claim that meets a move
// committed after the snapshot fails with 40001 (the documented caveat);
// the retried transaction gets RF001.
func TestRepeatableRead(t *testing.T) {
	u := installed(t, 0)
	seed(t, u, "k", 3, "o")
	ctx := testCtx(t)
	for _, term := range []int64{3, 5} { // same term (shared lock), newer term (move)
		c := connect(t, u)
		tx, err := c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `SELECT 1`); err != nil { // takes the snapshot
			t.Fatal(err)
		}
		mustCommitClaim(t, u, "k", term+1, "o")
		_, err = claimSQL(ctx, tx, "k", term, "o")
		if code, _ := pgCode(err); code != "40001" {
			t.Fatalf("claim at %d after a concurrent move: %v; want 40001", term, err)
		}
		_ = tx.Rollback(ctx)
		tx, err = c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
		if err != nil {
			t.Fatal(err)
		}
		_, err = claimSQL(ctx, tx, "k", term, "o")
		if code, _ := pgCode(err); code != fence.CodeStaleTerm {
			t.Fatalf("retried claim at %d: %v; want RF001", term, err)
		}
		_ = tx.Rollback(ctx)
	}
}
