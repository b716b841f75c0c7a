package fence

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// SchemaVersion is the version of the regent_fence schema this package
// installs and reads.
const SchemaVersion = 1

// Stall timeout defaults and limits (InstallOptions.StallTimeout).
const (
	DefaultStallTimeout = 5 * time.Second
	MinStallTimeout     = time.Millisecond
	MaxStallTimeout     = 24 * time.Hour
)

//go:embed schema.sql
var schemaBody string

// SQL returns the full install SQL, one transaction (what `regent fence
// sql` prints): run it with psql as the role that is to own the
// functions. It is idempotent and refuses a newer installed schema.
func SQL() string {
	return "BEGIN;\n" + schemaBody + "\nCOMMIT;\n"
}

// InstallOptions tunes Install.
type InstallOptions struct {
	// StallTimeout is how long a claim that moves the fence to a newer
	// term waits for transactions of older terms that hold the key before
	// ending their sessions (see the package documentation). Zero keeps
	// the installed value (DefaultStallTimeout, 5s, on a first install).
	// Between MinStallTimeout and MaxStallTimeout, whole milliseconds.
	StallTimeout time.Duration
}

// Validate checks the options.
func (o InstallOptions) Validate() error {
	if o.StallTimeout != 0 && (o.StallTimeout < MinStallTimeout || o.StallTimeout > MaxStallTimeout) {
		return fmt.Errorf("fence: stall timeout %v out of range [%v, %v]", o.StallTimeout, MinStallTimeout, MaxStallTimeout)
	}
	return nil
}

// Install creates or updates the regent_fence schema in conn's database,
// in one transaction, as conn's role (which then owns the functions; it
// needs pg_signal_backend membership, or superuser, for the stall bound).
// Idempotent and safe when run concurrently. An installed schema newer
// than SchemaVersion is left alone and the error wraps ErrNewerSchema.
// Cancelling ctx rolls the install back.
func Install(ctx context.Context, conn *pgx.Conn, opts InstallOptions) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("fence: install: %w", err)
	}
	defer func() {
		// A no-op after Commit.
		_ = tx.Rollback(context.WithoutCancel(ctx))
	}()
	// No arguments: the simple protocol, which runs every statement.
	if _, err := tx.Exec(ctx, schemaBody); err != nil {
		if sqlState(err) == CodeNewerSchema {
			return fmt.Errorf("%w: %w", ErrNewerSchema, err)
		}
		return fmt.Errorf("fence: install: %w", err)
	}
	if opts.StallTimeout != 0 {
		if _, err := tx.Exec(ctx, `UPDATE regent_fence.settings SET stall_timeout_ms = $1`,
			opts.StallTimeout.Milliseconds()); err != nil {
			return fmt.Errorf("fence: install: set stall timeout: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("fence: install: %w", err)
	}
	return nil
}

// InstalledVersion returns the installed schema version, or
// ErrNotInstalled.
func InstalledVersion(ctx context.Context, conn *pgx.Conn) (int, error) {
	var v int
	err := conn.QueryRow(ctx, `SELECT version FROM regent_fence.version`).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) || isMissing(err) {
		return 0, ErrNotInstalled
	}
	if err != nil {
		return 0, fmt.Errorf("fence: read schema version: %w", err)
	}
	return v, nil
}

// WorkerFunctions are the functions a worker role calls, with their
// argument types (what GRANT EXECUTE names).
var WorkerFunctions = []string{
	"regent_fence.claim(text, bigint, text)",
	"regent_fence.record_refusal(text, bigint, text, text)",
}

// GrantSQL returns the statements that let role claim and record
// refusals, and nothing more: USAGE on the schema and EXECUTE on
// WorkerFunctions. The role gets no privilege on the tables.
func GrantSQL(role string) string {
	r := pgx.Identifier{role}.Sanitize()
	var b strings.Builder
	fmt.Fprintf(&b, "GRANT USAGE ON SCHEMA regent_fence TO %s;\n", r)
	fmt.Fprintf(&b, "GRANT EXECUTE ON FUNCTION %s TO %s;\n", strings.Join(WorkerFunctions, ", "), r)
	return b.String()
}

// isMissing reports a missing schema (3F000) or table (42P01).
func isMissing(err error) bool {
	switch sqlState(err) {
	case "3F000", "42P01":
		return true
	}
	return false
}
