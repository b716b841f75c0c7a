package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/regentd/regent/fence"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
)

// Exit codes of `riverworker work`.
const (
	exitOK    = 0
	exitError = 1
	// exitFenced: the resource refused this worker's claim (RF001 or
	// RF002). Its term is over (or the resource is another deployment's);
	// nothing it would still write is trusted.
	exitFenced = 3
)

// Args are the arguments of the example's jobs.
type Args struct {
	// WorkMS is how long the job works before completing, in
	// milliseconds (a stand-in for real work).
	WorkMS int `json:"work_ms"`
}

// Kind implements river.JobArgs.
func (Args) Kind() string { return "regent_example" }

// worker is one `riverworker work` process: a River client working one
// queue under one fencing token.
type worker struct {
	// pool is River's (fetching, its own bookkeeping).
	pool *pgxpool.Pool
	// jobs is the pool of the job's own transactions (start, complete):
	// apart from River's, so that River's background queries, which a
	// slow or cut network leaves hanging, cannot take every connection
	// from a completion; and without a liveness ping before each use
	// (a broken connection fails the completion, River retries the job).
	jobs    *pgxpool.Pool
	log     *slog.Logger
	queue   string
	tok     fence.Token
	fenceOn bool
	// exit ends the process at once (os.Exit; tests replace it).
	exit func(code int)
}

// jobWorker is the River worker of Args.
type jobWorker struct {
	river.WorkerDefaults[Args]
	w *worker
}

// Work works the job, then completes it in one flight (complete). A
// refused claim ends the process at once, before River could record
// anything for the job: River's own writes (the job's state) are not
// fenced, and a worker whose term is over must not make them.
func (j *jobWorker) Work(ctx context.Context, job *river.Job[Args]) error {
	t := time.NewTimer(time.Duration(job.Args.WorkMS) * time.Millisecond)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	}
	w := j.w
	cmp, err := w.complete(ctx, job.ID)
	if err != nil {
		return err
	}
	if ref := w.refusal(cmp); ref != nil {
		w.log.Error("claim_refused", "job_id", job.ID, "code", ref.Code, "term", w.tok.Term,
			"recorded", ref.RecordErr == nil, "error", ref.Error())
		w.exit(exitFenced)
		return ref
	}
	if cmp.Err != nil {
		return fmt.Errorf("complete job %d: %w", job.ID, cmp.Err)
	}
	w.log.Info("job_completed", "job_id", job.ID, "term", w.tok.Term, "job_row_completed", cmp.Completed)
	return nil
}

// requeueSQL makes the queue's jobs that a worker of an OLDER term left
// running available again, with an attempt error saying why. Under
// regent one term works a queue at a time, so such a job's worker is
// gone (or fenced): its attempt will never finish. Jobs of this term
// (another worker of the pool) are left alone. The term is read from
// the client id River records in attempted_by (clientID).
const requeueSQL = `
UPDATE river_job
SET state = 'available',
    scheduled_at = now(),
    errors = array_append(errors, jsonb_build_object(
        'at', now(), 'attempt', attempt,
        'error', 'riverworker: requeued by term ' || $2::bigint || ': the attempt of an older term was cut off',
        'trace', ''))
WHERE queue = $1 AND state = 'running'
  AND coalesce(substring(attempted_by[cardinality(attempted_by)] from '^t([0-9]+)/')::bigint, -1) < $2::bigint`

// start claims the fence and requeues the older terms' running jobs, in
// one transaction, before the River client fetches anything: a worker
// that the resource refuses never takes a job. The claim moves the fence
// to this term at once, so that an older term's write still in flight is
// refused from now on, not only once this term writes.
func (w *worker) start(ctx context.Context) (int64, error) {
	tx, err := w.jobs.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if w.fenceOn {
		if _, err := w.tok.Claim(ctx, tx); err != nil {
			return 0, err
		}
	}
	var n int64
	if w.tok.Owner != "" {
		tag, err := tx.Exec(ctx, requeueSQL, w.queue, w.tok.Term)
		if err != nil {
			return 0, fmt.Errorf("requeue older terms' jobs: %w", err)
		}
		n = tag.RowsAffected()
	}
	return n, tx.Commit(ctx)
}

// clientID is River's client id for this worker: "t<term>/<node>/<pid>"
// (River records it in attempted_by; requeueSQL reads the term back).
func clientID(tok fence.Token) string {
	id := fmt.Sprintf("t%d/%s/%d", tok.Term, tok.Node, os.Getpid())
	if len(id) > 100 { // River's limit
		id = id[:100]
	}
	return id
}

// workOptions configure `riverworker work`.
type workOptions struct {
	queue        string
	maxWorkers   int
	pollInterval time.Duration
	rescueAfter  time.Duration
	fenceOn      bool
}

// run works the queue until ctx is cancelled.
func (w *worker) run(ctx context.Context, o workOptions) error {
	requeued, err := w.start(ctx)
	if ref := (*fence.RefusalError)(nil); errors.As(err, &ref) {
		w.log.Error("claim_refused", "at", "start", "code", ref.Code, "term", w.tok.Term,
			"recorded", ref.RecordErr == nil, "error", ref.Error())
		w.exit(exitFenced)
		return err
	}
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}

	workers := river.NewWorkers()
	river.AddWorker(workers, &jobWorker{w: w})
	cfg := &river.Config{
		ID:                clientID(w.tok),
		Queues:            map[string]river.QueueConfig{o.queue: {MaxWorkers: o.maxWorkers}},
		Workers:           workers,
		FetchCooldown:     min(o.pollInterval, 50*time.Millisecond),
		FetchPollInterval: o.pollInterval,
		// River logs only what goes wrong; the example logs its events.
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if o.rescueAfter > 0 {
		cfg.RescueStuckJobsAfter = o.rescueAfter
	}
	client, err := river.NewClient(riverpgxv5.New(w.pool), cfg)
	if err != nil {
		return err
	}
	if err := client.Start(ctx); err != nil {
		return fmt.Errorf("start river client: %w", err)
	}
	w.log.Info("worker_started", "term", w.tok.Term, "node", w.tok.Node,
		"fence", o.fenceOn, "requeued", requeued, "client_id", cfg.ID)
	<-ctx.Done()
	w.log.Info("worker_stopping", "term", w.tok.Term)
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return client.Stop(stopCtx)
}
