package pgbackend

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/internal/testenv"
)

// TestMigrateToVersion2 upgrades a version-1 schema holding a leader
// record, from several replicas at once: the history table appears once,
// and the next takeover records the term it found.
func TestMigrateToVersion2(t *testing.T) {
	url := testenv.NewDatabase(t)
	ctx := testCtx(t)
	c := rawConn(t, url)
	if _, err := c.Exec(ctx, createVersionTable); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, migrations[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `
INSERT INTO regent_schema_version (id, version) VALUES (1, 1);
INSERT INTO regent_leaders (cluster, queue, node, host, pid, term, elected_at, renewed_at, expires_at, lock_pid, released)
VALUES ('c', 'q', 'old', 'oldhost', 1, 5, now() - interval '1 hour', now() - interval '1 minute',
        now() - interval '1 minute', 0, true)`); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := fmt.Sprintf("n%d", i)
			b, err := New(ctx, Config{URL: url}, testOpts("c", node), testenv.Logger(t, node))
			if err == nil {
				err = b.Close(ctx)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var v int
	if err := c.QueryRow(ctx, `SELECT version FROM regent_schema_version`).Scan(&v); err != nil || v != SchemaVersion {
		t.Fatalf("schema version %d, %v; want %d", v, err, SchemaVersion)
	}

	a := openBackend(t, url, testOpts("c", "a"))
	l := mustCampaign(t, a, "q", nil)
	if l.Term() != 6 {
		t.Fatalf("term %d, want 6", l.Term())
	}
	h, err := a.History(ctx, "q", 0)
	if err != nil || len(h) != 2 {
		t.Fatalf("history %+v, %v; want 2 entries", h, err)
	}
	if h[0].Term != 6 || h[0].Node != "a" || h[0].EndReason != "" || !h[0].To.IsZero() {
		t.Errorf("latest entry %+v", h[0])
	}
	// Released before the upgrade: how is not known, a clean end.
	if h[1].Term != 5 || h[1].Node != "old" || h[1].Host != "oldhost" || h[1].EndReason != election.EndResign ||
		h[1].From.IsZero() || h[1].To.IsZero() {
		t.Errorf("entry of the term before the upgrade %+v", h[1])
	}
}

// TestHistoryNeverBlocks: with the history table gone, elections,
// resigns, releases and Close work as before; only History fails.
func TestHistoryNeverBlocks(t *testing.T) {
	url := testenv.NewDatabase(t)
	ctx := testCtx(t)
	cluster := randomName("c")
	a := openBackend(t, url, testOpts(cluster, "a"))
	b := openBackend(t, url, testOpts(cluster, "b"))
	ro := testOpts(cluster, "reader")
	ro.ReadOnly = true
	reader := openBackend(t, url, ro)
	if _, err := rawConn(t, url).Exec(ctx, `DROP TABLE regent_history`); err != nil {
		t.Fatal(err)
	}

	la := mustCampaign(t, a, "q", nil)
	next := campaignAsync(t, ctx, b, "q", nil)
	if err := la.Resign(ctx); err != nil {
		t.Fatalf("resign: %v", err)
	}
	r := waitResult(t, next, time.Second)
	if r.err != nil {
		t.Fatalf("b's campaign: %v", r.err)
	}
	next = campaignAsync(t, ctx, a, "q", nil)
	if err := reader.ReleaseTerm(ctx, "q", r.lead.Term()); err != nil {
		t.Fatalf("release term: %v", err)
	}
	r = waitResult(t, next, time.Second)
	if r.err != nil || r.lead.Term() <= la.Term() {
		t.Fatalf("a's second campaign: %+v", r)
	}
	if _, err := reader.History(ctx, "q", 0); err == nil {
		t.Fatal("History without its table: no error")
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Close released it cleanly: b wins at once.
	r = waitResult(t, campaignAsync(t, ctx, b, "q", nil), time.Second)
	if r.err != nil {
		t.Fatalf("b's campaign after a closed: %v", r.err)
	}
}

// TestHistoryRows checks how stored rows are read: newest first, damaged
// ones skipped, open ones judged by the record, a record without a row
// included.
func TestHistoryRows(t *testing.T) {
	url := testenv.NewDatabase(t)
	ctx := testCtx(t)
	cluster := randomName("c")
	ro := testOpts(cluster, "reader")
	ro.ReadOnly = true
	reader := openBackend(t, url, ro) // migrates
	c := rawConn(t, url)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := c.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`
INSERT INTO regent_leaders (cluster, queue, node, host, pid, term, elected_at, expires_at, lock_pid, released)
VALUES ($1, 'q', 'n7', 'h7', 1, 7, now() - interval '1 minute', now() - interval '1 second', 0, false)`, cluster)
	exec(`
INSERT INTO regent_history (cluster, queue, term, node, host, started_at, ended_at, end_reason) VALUES
	($1, 'q', 1, 'n1', 'h1', now() - interval '10 minute', now() - interval '9 minute', 'resign'),
	($1, 'q', 2, NULL, 'h2', now() - interval '9 minute', now() - interval '8 minute', 'resign'),
	($1, 'q', 3, 'n3', 'h3', now() - interval '8 minute', now() - interval '7 minute', 'bogus'),
	($1, 'q', 4, 'n4', 'h4', now() - interval '7 minute', NULL, NULL),
	($1, 'q', 5, 'n5', 'h5', now() - interval '6 minute', now() - interval '5 minute', 'lost'),
	($1, 'q', 6, 'n6', 'h6', now() - interval '5 minute', now() - interval '4 minute', 'released')`, cluster)

	h, err := reader.History(ctx, "q", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		term   int64
		reason string
		to     bool // an end time is known
	}{
		{7, election.EndExpiry, true}, // no row; its lease expired
		{6, election.EndReleased, true},
		{5, election.EndLost, true},
		{4, election.EndExpiry, false}, // superseded, end unknown
		{1, election.EndResign, true},
	}
	if len(h) != len(want) {
		t.Fatalf("history %+v, want terms 7, 6, 5, 4, 1", h)
	}
	for i, w := range want {
		if h[i].Term != w.term || h[i].EndReason != w.reason || h[i].To.IsZero() == w.to ||
			h[i].Node != fmt.Sprintf("n%d", w.term) || h[i].Host != fmt.Sprintf("h%d", w.term) || h[i].Queue != "q" {
			t.Errorf("entry %d: %+v, want term %d reason %q end known %v", i, h[i], w.term, w.reason, w.to)
		}
	}
	if h, err := reader.History(ctx, "q", 2); err != nil || len(h) != 2 || h[1].Term != 6 {
		t.Errorf("history with limit 2: %+v, %v", h, err)
	}

	// Released without a recorded reason: a clean end, when released.
	exec(`UPDATE regent_leaders SET released = true WHERE cluster = $1`, cluster)
	if h, err := reader.History(ctx, "q", 1); err != nil || len(h) != 1 || h[0].EndReason != election.EndResign || h[0].To.IsZero() {
		t.Errorf("released record: %+v, %v", h, err)
	}
	// A live lease: the term lasts.
	exec(`UPDATE regent_leaders SET released = false, expires_at = now() + interval '1 hour' WHERE cluster = $1`, cluster)
	if h, err := reader.History(ctx, "q", 1); err != nil || len(h) != 1 || h[0].EndReason != "" || !h[0].To.IsZero() {
		t.Errorf("live record: %+v, %v", h, err)
	}
	if h, err := reader.History(ctx, "other", 0); err != nil || len(h) != 0 {
		t.Errorf("history of a queue never led: %+v, %v", h, err)
	}
}

// TestHistoryLostNoteBounded: a leader whose session is killed records
// its term lost; once its lease has run out it no longer may, and the
// takeover records the expiry.
func TestHistoryLostNoteBounded(t *testing.T) {
	url := testenv.NewDatabase(t)
	ctx := testCtx(t)
	cluster := randomName("c")
	a := openBackend(t, url, testOpts(cluster, "a"))
	la := mustCampaign(t, a, "q", nil)
	c := rawConn(t, url)
	// The lease as if it ran out, and the session killed, in one
	// statement (no renewal in between): too late for the leader to call
	// it lost.
	if _, err := c.Exec(ctx, `
WITH u AS (UPDATE regent_leaders SET expires_at = now() - interval '1 second' WHERE cluster = $1 RETURNING 1)
SELECT (SELECT count(*) FROM u), pg_terminate_backend($2)`, cluster, a.LockPID()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("backend not done after its session was killed")
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = a.Close(cctx) // waits for the note attempt
	b := openBackend(t, url, testOpts(cluster, "b"))
	lb := mustCampaign(t, b, "q", nil)
	h, err := b.History(ctx, "q", 2)
	if err != nil || len(h) != 2 || h[0].Term != lb.Term() || h[1].Term != la.Term() || h[1].EndReason != election.EndExpiry {
		t.Fatalf("history %+v, %v; want term %d expired", h, err, la.Term())
	}
}
