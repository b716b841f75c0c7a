package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/regentd/regent/fence"
)

// The statements of a job's completion. Parameters are sent as text and
// typed by the server from the statement (claim's signature, the
// columns).
const (
	// claimSQL is regent_fence.claim, the same call fence.Token.Claim
	// makes; here it is queued in the pipeline instead of being a round
	// trip of its own.
	claimSQL = `SELECT regent_fence.claim($1, $2, $3)`
	// resultSQL is the job's business write.
	resultSQL = `INSERT INTO example_results (job_id, term, owner, node) VALUES ($1, $2, $3, $4)`
	// completeSQL mirrors river.JobCompleteTx (the driver's
	// JobSetStateIfRunningMany with state completed): the job becomes
	// completed only if it is still running, so River's own completion
	// after Work returns finds nothing more to do.
	completeSQL = `UPDATE river_job SET state = 'completed', finalized_at = now() WHERE id = $1 AND state = 'running'`
	// markSQL marks the session when the first segment commits: the
	// setting is undone if the transaction aborts. The second segment
	// reads it.
	markSQL = `SELECT set_config('riverworker.completed_job', $1, false)`
	// noteSQL is the second segment (see riverworker_note_refusal).
	noteSQL = `SELECT riverworker_note_refusal($1, $2, $3, $4, $5)`
)

// completion is what the server answered to one completion flight.
type completion struct {
	// Err is the first segment's error (nil: it committed).
	Err error
	// Completed reports whether the job row moved from running to
	// completed (false: it was no longer running).
	Completed bool
	// Noted is the refusal the second segment recorded ("RF001",
	// "RF002"), or "".
	Noted string
}

// complete completes job jobID: claim, business write and the job's
// completion, sent in ONE flight (one write to the socket) as a pipeline
// of two segments, each an implicit transaction ending at its Sync:
//
//	segment 1: claim; INSERT example_results; UPDATE river_job; mark
//	segment 2: riverworker_note_refusal (when the fence is on)
//
// Why one flight: a transaction made of several round trips can only be
// "in flight" up to the round trip that is waiting; once the worker is
// killed, nothing after it is ever sent. With one flight the whole
// transaction is on the wire (or in a network's buffers) at once, and
// can reach the database after the worker died and the next term began:
// the case the fence exists for. An error (the claim's RF001) makes the
// server skip the rest of the segment and roll the implicit transaction
// back at its Sync.
//
// Why a second segment: the refusal must be recorded even when nobody is
// left to read the error (the worker was killed while its bytes were in
// flight), so the server records it, in a transaction of its own, from
// the same flight. fence.Token.Claim records through a new connection
// after reading the error, which a dead worker cannot do.
func (w *worker) complete(ctx context.Context, jobID int64) (completion, error) {
	c, err := w.jobs.Acquire(ctx)
	if err != nil {
		return completion{}, err
	}
	defer c.Release()

	id := strconv.FormatInt(jobID, 10)
	term := strconv.FormatInt(w.tok.Term, 10)
	txt := func(s ...string) [][]byte {
		out := make([][]byte, len(s))
		for i, v := range s {
			out[i] = []byte(v)
		}
		return out
	}

	p := c.Conn().PgConn().StartPipeline(ctx)
	// Segment 1: the job's transaction. stmts names each statement's
	// role, in order, for reading the results.
	var stmts []string
	if w.fenceOn {
		p.SendQueryParams(claimSQL, txt(w.tok.Key, term, w.tok.Owner), nil, nil, nil)
		stmts = append(stmts, "claim")
	}
	p.SendQueryParams(resultSQL, txt(id, term, w.tok.Owner, w.tok.Node), nil, nil, nil)
	p.SendQueryParams(completeSQL, txt(id), nil, nil, nil)
	p.SendQueryParams(markSQL, txt(id), nil, nil, nil)
	stmts = append(stmts, "result", "complete", "mark")
	p.SendPipelineSync()
	segments := 1
	// Segment 2: record a refusal, server side.
	if w.fenceOn {
		p.SendQueryParams(noteSQL, txt(id, w.tok.Key, term, w.tok.Owner, w.tok.Node), nil, nil, nil)
		p.SendPipelineSync()
		segments = 2
	}
	if err := p.Flush(); err != nil {
		_ = p.Close()
		return completion{}, fmt.Errorf("send completion of job %d: %w", jobID, err)
	}
	w.log.Info("completion_sent", "job_id", jobID, "term", w.tok.Term, "fence", w.fenceOn)

	var out completion
	seg, stmt := 0, 0
	for seg < segments {
		res, err := p.GetResults()
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr):
			// The rest of the segment is skipped up to its Sync.
			if seg == 0 && out.Err == nil {
				out.Err = pgErr
			}
			continue
		case err != nil:
			_ = p.Close()
			return completion{}, fmt.Errorf("completion of job %d: %w", jobID, err)
		case res == nil:
			_ = p.Close()
			return completion{}, fmt.Errorf("completion of job %d: the pipeline ended early", jobID)
		}
		switch r := res.(type) {
		case *pgconn.PipelineSync:
			seg++
			stmt = 0
		case *pgconn.ResultReader:
			got := r.Read()
			if got.Err != nil {
				if seg == 0 && out.Err == nil {
					out.Err = got.Err
				}
				continue
			}
			switch {
			case seg == 0 && stmts[stmt] == "complete":
				out.Completed = got.CommandTag.RowsAffected() == 1
			case seg == 1 && len(got.Rows) == 1 && got.Rows[0][0] != nil:
				out.Noted = string(got.Rows[0][0])
			}
			stmt++
		}
	}
	if err := p.Close(); err != nil {
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) {
			return completion{}, fmt.Errorf("completion of job %d: %w", jobID, err)
		}
	}
	return out, nil
}

// refusal turns a completion's error into the fence's *RefusalError when
// the resource refused the claim (RF001, RF002); nil otherwise. The
// refusal was recorded by the flight's second segment, not by the
// worker.
func (w *worker) refusal(cmp completion) *fence.RefusalError {
	var pgErr *pgconn.PgError
	if !errors.As(cmp.Err, &pgErr) {
		return nil
	}
	switch pgErr.Code {
	case fence.CodeStaleTerm, fence.CodeForeignOwner:
		ref := &fence.RefusalError{Code: pgErr.Code, Token: w.tok, Err: pgErr}
		if cmp.Noted == "" {
			ref.RecordErr = errors.New("the second segment recorded no refusal")
		}
		return ref
	}
	return nil
}
