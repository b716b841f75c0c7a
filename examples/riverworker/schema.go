package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// exampleSQL is the example's own schema, beside River's: the business
// table the jobs write and the function that records a refusal when the
// worker that sent the claim may be gone (see complete.go). Idempotent.
//
// example_results has no unique key on job_id on purpose: a business
// write that lands twice must stay visible (the control run shows it).
const exampleSQL = `
CREATE TABLE IF NOT EXISTS example_results (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	job_id     bigint NOT NULL,
	term       bigint NOT NULL,
	owner      text NOT NULL,
	node       text NOT NULL,
	written_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS example_results_job ON example_results (job_id);

-- riverworker_note_refusal runs in the second segment of a completion's
-- flight, in a transaction of its own. When the first segment (claim,
-- business write, job completion) committed, it set the session setting
-- riverworker.completed_job to the job's id and there is nothing to do.
-- Otherwise it claims again, inside a subtransaction: a refused claim
-- (RF001, RF002) is recorded with regent_fence.record_refusal and its
-- SQLSTATE returned. NULL: nothing was refused.
CREATE OR REPLACE FUNCTION riverworker_note_refusal(p_job text, p_key text, p_term bigint, p_owner text, p_node text)
RETURNS text
LANGUAGE plpgsql
AS $fn$
BEGIN
	IF current_setting('riverworker.completed_job', true) IS NOT DISTINCT FROM p_job THEN
		RETURN NULL;
	END IF;
	BEGIN
		PERFORM regent_fence.claim(p_key, p_term, p_owner);
	EXCEPTION WHEN SQLSTATE 'RF001' OR SQLSTATE 'RF002' THEN
		PERFORM regent_fence.record_refusal(p_key, p_term, p_owner, p_node);
		RETURN SQLSTATE;
	END;
	RETURN NULL;
END
$fn$;
`

// migrate brings River's schema up to date (rivermigrate) and creates the
// example's own tables and function.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	m, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		return fmt.Errorf("river migrator: %w", err)
	}
	res, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return fmt.Errorf("migrate river: %w", err)
	}
	if _, err := pool.Exec(ctx, exampleSQL); err != nil {
		return fmt.Errorf("migrate example schema: %w", err)
	}
	fmt.Printf("river schema: %d migrations applied; example schema ready\n", len(res.Versions))
	return nil
}
