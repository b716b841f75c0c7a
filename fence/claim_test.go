package fence_test

import (
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/regentd/regent/fence"
)

func TestClaimPgx(t *testing.T) {
	u := installed(t, 0)
	ctx := testCtx(t)
	tok := fence.Token{Key: "emails", Owner: "prod", Term: 9, Node: "n1"}
	c := connect(t, u)
	tx := begin(t, c)
	if got, err := tok.Claim(ctx, tx); err != nil || got != 9 {
		t.Fatalf("claim: %d %v", got, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		tok      fence.Token
		sentinel error
		code     string
		msg      string
	}{
		{fence.Token{Key: "emails", Owner: "prod", Term: 7, Node: "n2"}, fence.ErrStaleTerm, fence.CodeStaleTerm,
			`regent_fence: stale term 7 for key "emails": the resource already accepted term 9`},
		{fence.Token{Key: "emails", Owner: "staging", Term: 10, Node: "n3"}, fence.ErrForeignOwner, fence.CodeForeignOwner,
			`regent_fence: foreign owner "staging" for key "emails": the resource belongs to owner "prod" since `},
	} {
		conn := connect(t, u)
		tx := begin(t, conn)
		_, err := c.tok.Claim(ctx, tx)
		if !errors.Is(err, c.sentinel) {
			t.Fatalf("claim %+v: %v; want %v", c.tok, err, c.sentinel)
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != c.code || !strings.HasPrefix(pe.Message, c.msg) {
			t.Fatalf("claim %+v: PgError %+v", c.tok, pe)
		}
		var re *fence.RefusalError
		if !errors.As(err, &re) || re.RecordErr != nil || re.Token != c.tok {
			t.Fatalf("claim %+v: RefusalError %+v", c.tok, re)
		}
	}
	refs, err := fence.Refusals(ctx, c, time.Now().Add(-time.Hour))
	if err != nil || len(refs) != 2 {
		t.Fatalf("refusals = %+v, %v", refs, err)
	}
	if r := refs[0]; r.Code != fence.CodeStaleTerm || r.Node != "n2" || r.Term != 7 || r.CurrentTerm != 9 {
		t.Fatalf("refusal 0 = %+v", r)
	}
	if r := refs[1]; r.Code != fence.CodeForeignOwner || r.Node != "n3" || r.Owner != "staging" || r.CurrentOwner != "prod" {
		t.Fatalf("refusal 1 = %+v", r)
	}

	// An invalid token never reaches the server.
	if _, err := (fence.Token{Key: "k", Term: 1}).Claim(ctx, begin(t, connect(t, u))); !errors.Is(err, fence.ErrInvalidToken) {
		t.Fatalf("invalid token: %v", err)
	}
}

// TestClaimOtherErrors: errors other than a refusal are returned as they
// are (the driver's error kept) and record nothing.
func TestClaimOtherErrors(t *testing.T) {
	u := installed(t, 0)
	ctx := testCtx(t)
	c := connect(t, u)
	tx := begin(t, c)
	if _, err := tx.Exec(ctx, `SELECT 1/0`); err == nil {
		t.Fatal("no error")
	}
	_, err := fence.Token{Key: "k", Owner: "o", Term: 1}.Claim(ctx, tx)
	var pe *pgconn.PgError
	if err == nil || errors.Is(err, fence.ErrStaleTerm) || !errors.As(err, &pe) || pe.Code != "25P02" {
		t.Fatalf("claim in an aborted tx: %v", err)
	}
	if refs, err := fence.Refusals(ctx, connect(t, u), time.Time{}); err != nil || len(refs) != 0 {
		t.Fatalf("refusals = %+v, %v", refs, err)
	}
}

func TestClaimFromEnv(t *testing.T) {
	u := installed(t, 0)
	t.Setenv(fence.EnvKey, "q")
	t.Setenv(fence.EnvOwner, "prod")
	t.Setenv(fence.EnvTerm, "4")
	t.Setenv(fence.EnvNode, "n1")
	ctx := testCtx(t)
	if got, err := fence.Claim(ctx, begin(t, connect(t, u))); err != nil || got != 4 {
		t.Fatalf("claim: %d %v", got, err)
	}
	t.Setenv(fence.EnvTerm, "")
	if _, err := fence.Claim(ctx, begin(t, connect(t, u))); !errors.Is(err, fence.ErrInvalidToken) {
		t.Fatalf("claim without term: %v", err)
	}
}

func TestClaimDatabaseSQL(t *testing.T) {
	u := installed(t, 0)
	ctx := testCtx(t)
	db, err := sql.Open("pgx", u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	_ = stdlib.GetDefaultDriver()

	tok := fence.Token{Key: "k", Owner: "o", Term: 3, Node: "n"}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := tok.ClaimSQL(ctx, db, tx); err != nil || got != 3 {
		t.Fatalf("claim: %d %v", got, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	stale := fence.Token{Key: "k", Owner: "o", Term: 2, Node: "n"}
	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	_, err = stale.ClaimSQL(ctx, db, tx)
	var pe *pgconn.PgError
	if !errors.Is(err, fence.ErrStaleTerm) || !errors.As(err, &pe) || pe.Code != fence.CodeStaleTerm {
		t.Fatalf("stale claim: %v", err)
	}
	var re *fence.RefusalError
	if !errors.As(err, &re) || re.RecordErr != nil {
		t.Fatalf("refusal not recorded: %v", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	refs, err := fence.Refusals(ctx, connect(t, u), time.Time{})
	if err != nil || len(refs) != 1 || refs[0].Term != 2 || refs[0].Code != fence.CodeStaleTerm {
		t.Fatalf("refusals = %+v, %v", refs, err)
	}
}
