package fence_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/regentd/regent/fence"
	"github.com/regentd/regent/internal/testenv"
)

// testTimeout bounds every test's context.
const testTimeout = 60 * time.Second

func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// installed returns a fresh database's superuser URL with the fence
// installed (stall timeout stall, 0 for the default).
func installed(t testing.TB, stall time.Duration) string {
	t.Helper()
	u := testenv.NewDatabase(t)
	c := connect(t, u)
	if err := fence.Install(testCtx(t), c, fence.InstallOptions{StallTimeout: stall}); err != nil {
		t.Fatalf("install: %v", err)
	}
	return u
}

// connect opens a connection closed at the end of the test.
func connect(t testing.TB, u string) *pgx.Conn {
	t.Helper()
	ctx := testCtx(t)
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// begin starts a transaction on c, rolled back at the end of the test if
// still open.
func begin(t *testing.T, c *pgx.Conn) pgx.Tx {
	t.Helper()
	tx, err := c.Begin(testCtx(t))
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return tx
}

// claimSQL calls regent_fence.claim in tx.
func claimSQL(ctx context.Context, tx pgx.Tx, key string, term int64, owner string) (int64, error) {
	var got int64
	err := tx.QueryRow(ctx, `SELECT regent_fence.claim($1, $2, $3)`, key, term, owner).Scan(&got)
	return got, err
}

// mustClaim claims and fails the test on error or on another term.
func mustClaim(t *testing.T, tx pgx.Tx, key string, term int64, owner string) {
	t.Helper()
	got, err := claimSQL(testCtx(t), tx, key, term, owner)
	if err != nil {
		t.Fatalf("claim %s term %d owner %s: %v", key, term, owner, err)
	}
	if got != term {
		t.Fatalf("claim %s term %d returned %d", key, term, got)
	}
}

// pgCode returns err's SQLSTATE and message, or "".
func pgCode(err error) (code, msg string) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code, pe.Message
	}
	return "", ""
}

// pid returns c's backend pid.
func pid(c *pgx.Conn) uint32 { return c.PgConn().PID() }

// waitLockWait polls until session p waits on a lock, failing the test at
// the deadline.
func waitLockWait(t *testing.T, admin *pgx.Conn, p uint32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		var waiting bool
		if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock')`, int64(p)).Scan(&waiting); err != nil {
			t.Fatalf("poll lock wait of %d: %v", p, err)
		}
		if waiting {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("session %d never waited on a lock", p)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// result is what a claim run in a goroutine returns.
type result struct {
	term int64
	err  error
	at   time.Time
}

// claimAsync claims in tx on a goroutine; the channel gets one result.
func claimAsync(ctx context.Context, tx pgx.Tx, key string, term int64, owner string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		got, err := claimSQL(ctx, tx, key, term, owner)
		ch <- result{got, err, time.Now()}
	}()
	return ch
}

// await returns the result or fails the test after d.
func await(t *testing.T, ch <-chan result, d time.Duration) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(d):
		t.Fatalf("claim did not return within %v", d)
		return result{}
	}
}

// notYet fails the test if ch already has a result.
func notYet(t *testing.T, ch <-chan result) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("claim returned early: term %d err %v", r.term, r.err)
	default:
	}
}

// asUser returns u with its user replaced.
func asUser(t *testing.T, u, user string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	p.User = url.User(user)
	return p.String()
}
