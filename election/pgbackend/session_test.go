package pgbackend

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/internal/testenv"
)

// TestRenewalWritesNoLeaderRows: a leader of 50 queues renews by writing
// its one session row; no leader row is written by a renewal (each row's
// xmin, the transaction that wrote its version, stays the same), while
// every leadership's trust window keeps moving.
func TestRenewalWritesNoLeaderRows(t *testing.T) {
	const n = 50
	url := testenv.NewDatabase(t)
	ctx := testCtx(t)
	cluster := randomName("c")
	a := openBackend(t, url, testOpts(cluster, "a"))
	var leads []election.Leadership
	for i := range n {
		leads = append(leads, mustCampaign(t, a, fmt.Sprintf("q%02d", i), nil))
	}
	c := rawConn(t, url)
	leaderXmins := func() map[string]string {
		t.Helper()
		rows, err := c.Query(ctx, `SELECT queue, xmin::text FROM regent_leaders WHERE cluster = $1`, cluster)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string]string{}
		for rows.Next() {
			var q, x string
			if err := rows.Scan(&q, &x); err != nil {
				t.Fatal(err)
			}
			out[q] = x
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	sessionXmin := func() string {
		t.Helper()
		var x string
		var count int
		if err := c.QueryRow(ctx, `SELECT min(xmin::text), count(*) FROM regent_sessions WHERE cluster = $1`,
			cluster).Scan(&x, &count); err != nil || count != 1 {
			t.Fatalf("session rows: %d, %v; want 1", count, err)
		}
		return x
	}

	before := leaderXmins()
	if len(before) != n {
		t.Fatalf("%d leader rows, want %d", len(before), n)
	}
	valid := leads[0].ValidUntil()
	const renewals = 4
	seen := map[string]bool{sessionXmin(): true}
	eventually(t, 10*time.Second, fmt.Sprintf("%d renewals", renewals), func() bool {
		seen[sessionXmin()] = true
		return len(seen) > renewals
	})
	after := leaderXmins()
	for q, x := range before {
		if after[q] != x {
			t.Errorf("leader row of %s written during renewals: xmin %s -> %s", q, x, after[q])
		}
	}
	for _, l := range leads {
		if closed(l.Done()) {
			t.Fatalf("leadership %s lost", l.Queue())
		}
		if !l.ValidUntil().After(valid) {
			t.Fatalf("leadership %s not renewed", l.Queue())
		}
	}
	t.Logf("%d leaderships: %d renewals wrote %d session row versions and 0 leader rows", n, renewals, len(seen)-1)

	// Status still sees every leader with its renewal time.
	recs, err := a.Leaders(ctx)
	if err != nil || len(recs) != n {
		t.Fatalf("leaders: %d, %v", len(recs), err)
	}
	for _, r := range recs {
		if r.Err != nil || r.RenewedAt.IsZero() {
			t.Fatalf("record %+v", r)
		}
	}
}

// TestMigrateFromVersion2: a version 2 schema with a live lease is
// migrated; the lease is still waited out, the term goes on, and a
// replica that predates version 3 fails loudly when it renews or takes
// over, naming the schema version.
func TestMigrateFromVersion2(t *testing.T) {
	url := testenv.NewDatabase(t)
	ctx := testCtx(t)
	c := rawConn(t, url)
	if _, err := c.Exec(ctx, createVersionTable); err != nil {
		t.Fatal(err)
	}
	for _, m := range migrations[:2] {
		if _, err := c.Exec(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Exec(ctx, `
INSERT INTO regent_schema_version (id, version) VALUES (1, 2);
INSERT INTO regent_leaders (cluster, queue, node, host, pid, term, elected_at, renewed_at, expires_at, lock_pid, released)
VALUES ('c', 'q', 'old', 'oldhost', 1, 5, now() - interval '1 hour', now(), now() + interval '1500 millisecond', 0, false)`); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	a := openBackend(t, url, testOpts("c", "a"))
	var v int
	if err := c.QueryRow(ctx, `SELECT version FROM regent_schema_version`).Scan(&v); err != nil || v != SchemaVersion {
		t.Fatalf("schema version %d, %v; want %d", v, err, SchemaVersion)
	}
	rec, err := a.Leader(ctx, "q")
	if err != nil || rec.Node != "old" || rec.Term != 5 {
		t.Fatalf("leader after migration: %+v, %v", rec, err)
	}
	l := mustCampaign(t, a, "q", nil)
	if took := time.Since(start); took < time.Second {
		t.Fatalf("the old lease was not waited out: led after %s", took)
	}
	if l.Term() != 6 {
		t.Fatalf("term %d, want 6", l.Term())
	}
	h, err := a.History(ctx, "q", 2)
	if err != nil || len(h) != 2 || h[1].Term != 5 || h[1].EndReason != election.EndExpiry {
		t.Fatalf("history %+v, %v", h, err)
	}

	// The statements of a version 2 replica: renewal and takeover.
	for _, sql := range []string{
		`UPDATE regent_leaders SET renewed_at = now(), expires_at = now() + interval '1 second' WHERE cluster = 'c'`,
		`INSERT INTO regent_leaders (cluster, queue, node, term, elected_at, renewed_at, expires_at, lock_pid, released)
		 VALUES ('c', 'other', 'old', 1, now(), now(), now() + interval '1 second', pg_backend_pid(), false)`,
	} {
		_, err := c.Exec(ctx, sql)
		if err == nil || !strings.Contains(err.Error(), "regent_schema_v3_needs_newer_regent") {
			t.Errorf("statement of an older replica: %v; want the schema version constraint", err)
		}
	}
}

// TestDeadlineLostRecordNotKeptAlive: a leadership that ended on its own
// deadline while the session lives on no longer follows the session's
// lease: the session's next renewal gives it the lease it had, so a
// follower takes over once that has run out though the session keeps
// renewing its other leaderships.
func TestDeadlineLostRecordNotKeptAlive(t *testing.T) {
	url := testenv.NewDatabase(t)
	cluster := randomName("c")
	opts := testOpts(cluster, "a")
	opts.LeaseTTL = time.Second
	opts.RenewInterval = 200 * time.Millisecond
	a := openBackendCfg(t, Config{URL: url, StatementTimeout: 5 * time.Second}, opts)
	b := openBackend(t, url, testOpts(cluster, "b"))
	ctx := testCtx(t)
	keep := mustCampaign(t, a, "keep", nil)
	drop := mustCampaign(t, a, "drop", nil)

	// Block renewals until both deadlines pass, then let them through.
	blocker := rawConn(t, url)
	tx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM regent_sessions WHERE cluster = $1 FOR UPDATE`, cluster); err != nil {
		t.Fatal(err)
	}
	select {
	case <-drop.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("leadership not lost at its deadline")
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	<-keep.Done()
	// A new leadership of the same session, renewed from now on.
	keep2 := mustCampaign(t, a, "keep", nil)
	lb := mustCampaign(t, b, "drop", nil)
	if lb.Term() != drop.Term()+1 {
		t.Fatalf("term %d, want %d", lb.Term(), drop.Term()+1)
	}
	if closed(keep2.Done()) {
		t.Fatal("other leadership of the session lost")
	}
}
