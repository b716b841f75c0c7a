package fence

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	claimSQL         = `SELECT regent_fence.claim($1, $2, $3)`
	recordRefusalSQL = `SELECT regent_fence.record_refusal($1, $2, $3, $4)`
)

// RecordTimeout bounds the recording of a refusal (connect and call). It
// runs on a context that ignores the claim's cancellation, so that a
// refusal is recorded even when the caller gives up at once.
const RecordTimeout = 5 * time.Second

// Claim claims the token inside tx, before the transaction's writes, and
// returns the term now recorded for the key. The claim holds until tx
// ends: a shared row lock for the same term, an exclusive one when it
// moved the fence to a newer term.
//
// When the resource refuses (RF001, RF002), tx is aborted: Claim records
// the refusal through a new short connection made from tx.Conn().Config()
// and returns a *RefusalError (errors.Is with ErrStaleTerm or
// ErrForeignOwner). The caller rolls tx back and must not retry with the
// same token. Other errors are returned as the driver gave them (a
// serialization failure, 40001, is retried with a new transaction).
// Cancelling ctx cancels the claim (a mover waits for older terms up to
// the stall timeout).
func (t Token) Claim(ctx context.Context, tx pgx.Tx) (int64, error) {
	if err := t.Validate(); err != nil {
		return 0, err
	}
	var term int64
	err := tx.QueryRow(ctx, claimSQL, t.Key, t.Term, t.Owner).Scan(&term)
	if err == nil {
		return term, nil
	}
	ref, ok := asRefusal(t, err)
	if !ok {
		return 0, fmt.Errorf("fence: claim of key %q at term %d: %w", t.Key, t.Term, err)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), RecordTimeout)
	defer cancel()
	ref.RecordErr = t.recordPgx(rctx, tx.Conn().Config())
	return 0, ref
}

// recordPgx records the refusal through a new connection made from cfg.
func (t Token) recordPgx(ctx context.Context, cfg *pgx.ConnConfig) error {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, recordRefusalSQL, t.Key, t.Term, t.Owner, t.Node)
	return err
}

// ClaimSQL is Claim for database/sql: it claims inside tx and records a
// refusal through db (another connection of db's pool; a pool limited to
// one connection cannot record, and the refusal error then says so
// after RecordTimeout).
func (t Token) ClaimSQL(ctx context.Context, db *sql.DB, tx *sql.Tx) (int64, error) {
	if err := t.Validate(); err != nil {
		return 0, err
	}
	var term int64
	err := tx.QueryRowContext(ctx, claimSQL, t.Key, t.Term, t.Owner).Scan(&term)
	if err == nil {
		return term, nil
	}
	ref, ok := asRefusal(t, err)
	if !ok {
		return 0, fmt.Errorf("fence: claim of key %q at term %d: %w", t.Key, t.Term, err)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), RecordTimeout)
	defer cancel()
	_, ref.RecordErr = db.ExecContext(rctx, recordRefusalSQL, t.Key, t.Term, t.Owner, t.Node)
	return 0, ref
}

// Claim claims the token of the environment (FromEnv) inside tx.
func Claim(ctx context.Context, tx pgx.Tx) (int64, error) {
	t, err := FromEnv()
	if err != nil {
		return 0, err
	}
	return t.Claim(ctx, tx)
}
