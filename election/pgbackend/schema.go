package pgbackend

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// migrations are applied in order; migrations[i] takes the schema from
// version i to version i+1. Only append: never edit an applied migration.
//
// Columns other than the keys may be NULL, so that a record damaged by
// hand is still read (and reported as corrupt) rather than breaking every
// query.
var migrations = []string{
	// 1: leaders, members, step-down requests.
	`
CREATE TABLE IF NOT EXISTS regent_leaders (
	cluster     text NOT NULL,
	queue       text NOT NULL,
	node        text,
	host        text,
	pid         integer,
	term        bigint,
	payload     jsonb,
	payload_raw bytea,
	elected_at  timestamptz,
	renewed_at  timestamptz,
	expires_at  timestamptz,
	lock_pid    integer,
	released    boolean DEFAULT false,
	PRIMARY KEY (cluster, queue)
);
CREATE TABLE IF NOT EXISTS regent_members (
	cluster     text NOT NULL,
	node        text NOT NULL,
	host        text,
	pid         integer,
	role        text,
	payload     jsonb,
	payload_raw bytea,
	last_seen   timestamptz,
	expires_at  timestamptz,
	session_pid integer,
	PRIMARY KEY (cluster, node)
);
CREATE TABLE IF NOT EXISTS regent_stepdowns (
	cluster      text NOT NULL,
	queue        text NOT NULL,
	to_node      text NOT NULL DEFAULT '',
	term         bigint NOT NULL,
	requested_at timestamptz NOT NULL,
	hold_until   timestamptz NOT NULL,
	PRIMARY KEY (cluster, queue)
);
`,
	// 2: leadership history (see history.go).
	`
CREATE TABLE IF NOT EXISTS regent_history (
	cluster    text NOT NULL,
	queue      text NOT NULL,
	term       bigint NOT NULL,
	node       text,
	host       text,
	started_at timestamptz,
	ended_at   timestamptz,
	end_reason text,
	PRIMARY KEY (cluster, queue, term)
);
`,
	// 3: one lease row per lock session (see session.go). Leader records
	// follow their session's lease (expires_at NULL) instead of being
	// renewed one by one; rows written before keep their own expires_at,
	// a fixed lease. renewed_at of leader records is no longer written:
	// the constraint makes the statements of a replica that predates
	// version 3 (which renew and take over by writing renewed_at) fail
	// with an error naming it, rather than run with a schema they misread.
	`
CREATE TABLE IF NOT EXISTS regent_sessions (
	cluster    text NOT NULL,
	pid        integer NOT NULL,
	node       text,
	renewed_at timestamptz,
	expires_at timestamptz,
	PRIMARY KEY (cluster, pid)
);
UPDATE regent_leaders SET renewed_at = NULL WHERE renewed_at IS NOT NULL;
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_constraint
	               WHERE conrelid = 'regent_leaders'::regclass AND conname = 'regent_schema_v3_needs_newer_regent') THEN
		ALTER TABLE regent_leaders ADD CONSTRAINT regent_schema_v3_needs_newer_regent CHECK (renewed_at IS NULL);
	END IF;
END
$$;
`,
	// 4: the cluster's deployment id (see deployment.go), written once.
	`
CREATE TABLE IF NOT EXISTS regent_deployments (
	cluster    text PRIMARY KEY,
	id         text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);
`,
	// 5: operator records and the operator log (see control.go).
	`
CREATE TABLE IF NOT EXISTS regent_controls (
	cluster    text NOT NULL,
	kind       text NOT NULL,
	name       text NOT NULL,
	value      bytea,
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (cluster, kind, name)
);
CREATE TABLE IF NOT EXISTS regent_actions (
	cluster text NOT NULL,
	id      bigserial,
	entry   bytea,
	PRIMARY KEY (cluster, id)
);
`,
}

// SchemaVersion is the schema version this package writes and expects:
// the number of migrations.
const SchemaVersion = 5

const createVersionTable = `
CREATE TABLE IF NOT EXISTS regent_schema_version (
	id          integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
	version     integer NOT NULL,
	migrated_at timestamptz NOT NULL DEFAULT now()
)`

// migrate brings the schema to SchemaVersion. It is idempotent and safe
// when several replicas start at once: the work runs in one transaction
// under a transaction-level advisory lock, and re-reads the version after
// taking it. A schema newer than this package is left alone (migrations
// only add), with a warning.
func migrate(ctx context.Context, conn *pgx.Conn, log hclog.Logger) error {
	if len(migrations) != SchemaVersion {
		return fmt.Errorf("pgbackend: %d migrations for schema version %d", len(migrations), SchemaVersion)
	}
	var v int
	err := conn.QueryRow(ctx, `SELECT version FROM regent_schema_version`).Scan(&v)
	if err == nil && v >= SchemaVersion {
		if v > SchemaVersion {
			log.Warn("schema is newer than this regent", "schema_version", v, "known_version", SchemaVersion)
		}
		return nil
	}
	if err != nil && !errors.Is(err, pgx.ErrNoRows) && !isUndefinedTable(err) {
		return fmt.Errorf("read schema version: %w", err)
	}

	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin migration: %w", err)
	}
	defer func() {
		// Rollback after Commit is a no-op.
		_ = tx.Rollback(context.WithoutCancel(ctx))
	}()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, schemaLockKey); err != nil {
		return fmt.Errorf("lock schema: %w", err)
	}
	if _, err := tx.Exec(ctx, createVersionTable); err != nil {
		return fmt.Errorf("create schema version table: %w", err)
	}
	v = 0
	if err := tx.QueryRow(ctx, `SELECT version FROM regent_schema_version`).Scan(&v); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("read schema version: %w", err)
	}
	from := v
	for ; v < SchemaVersion; v++ {
		if _, err := tx.Exec(ctx, migrations[v]); err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
	}
	if _, err := tx.Exec(ctx, `
INSERT INTO regent_schema_version (id, version) VALUES (1, $1)
ON CONFLICT (id) DO UPDATE SET version = excluded.version, migrated_at = now()
WHERE regent_schema_version.version < excluded.version`, v); err != nil {
		return fmt.Errorf("record schema version: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit migration: %w", err)
	}
	if from < SchemaVersion {
		log.Info("schema migrated", "from_version", from, "to_version", SchemaVersion)
	}
	return nil
}

func isUndefinedTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42P01"
}
