// Command riverworker is an example worker that regent supervises: it
// works the jobs of one River queue and claims regent's fence in the
// transaction that completes each job, together with the job's business
// write. See README.md.
//
//	riverworker migrate            River's schema and the example's table
//	riverworker insert [-count N]  insert jobs, print their ids
//	riverworker work               work the queue (what regent runs)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/regentd/regent/fence"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
)

// Environment variables read besides regent's (fence.FromEnv, REGENT_QUEUE).
const (
	// EnvDatabaseURL is the database of River's jobs and of the
	// business table, the resource the fence protects.
	EnvDatabaseURL = "RIVERWORKER_DATABASE_URL"
	// EnvFence "off" turns the claim off: for a control run only, to see
	// what the fence prevents.
	EnvFence = "RIVERWORKER_FENCE"
	// EnvQueue is the queue regent gives each worker.
	EnvQueue = "REGENT_QUEUE"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cmd := "work"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("riverworker "+cmd, flag.ContinueOnError)
	dbURL := fs.String("database-url", os.Getenv(EnvDatabaseURL), "PostgreSQL URL of River's jobs and the business table (env "+EnvDatabaseURL+")")
	queue := fs.String("queue", os.Getenv(EnvQueue), "River queue (env "+EnvQueue+", set by regent)")
	var (
		count        *int
		workFor      *time.Duration
		maxWorkers   *int
		pollInterval *time.Duration
		rescueAfter  *time.Duration
	)
	switch cmd {
	case "migrate":
	case "insert":
		count = fs.Int("count", 1, "how many jobs to insert")
		workFor = fs.Duration("work", 0, "how long each job works before completing")
	case "work":
		maxWorkers = fs.Int("max-workers", 10, "jobs worked at once")
		pollInterval = fs.Duration("poll-interval", 200*time.Millisecond, "River's fetch poll interval")
		rescueAfter = fs.Duration("rescue-stuck-after", 0, "River's RescueStuckJobsAfter (0: River's default, 1h); a newer term requeues an older term's running jobs at its start anyway")
	default:
		fmt.Fprintf(os.Stderr, "riverworker: unknown command %q (migrate, insert, work)\n", cmd)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dbURL == "" {
		fmt.Fprintf(os.Stderr, "riverworker: no database: set %s or -database-url\n", EnvDatabaseURL)
		return 2
	}
	if cmd != "migrate" && *queue == "" {
		fmt.Fprintf(os.Stderr, "riverworker: no queue: set %s (regent does) or -queue\n", EnvQueue)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	pool, err := pgxpool.New(ctx, *dbURL)
	if err != nil {
		log.Error("connect", "error", err)
		return exitError
	}
	defer pool.Close()

	switch cmd {
	case "migrate":
		err = migrate(ctx, pool)
	case "insert":
		err = insert(ctx, pool, *queue, *count, *workFor)
	case "work":
		var w *worker
		var o workOptions
		w, o, err = newWorker(pool, log, *queue)
		if err == nil {
			w.jobs, err = jobsPool(ctx, *dbURL, *maxWorkers)
		}
		if err == nil {
			defer w.jobs.Close()
			o.maxWorkers, o.pollInterval, o.rescueAfter = *maxWorkers, *pollInterval, *rescueAfter
			err = w.run(ctx, o)
		}
	}
	if err != nil {
		log.Error("riverworker "+cmd, "error", err)
		return exitError
	}
	return exitOK
}

// newWorker reads the fencing token of the environment (fence.FromEnv).
// Without a token the worker refuses to start, unless the fence is off.
func newWorker(pool *pgxpool.Pool, log *slog.Logger, queue string) (*worker, workOptions, error) {
	o := workOptions{queue: queue, fenceOn: true}
	switch v := os.Getenv(EnvFence); v {
	case "", "on":
	case "off":
		o.fenceOn = false
	default:
		return nil, o, fmt.Errorf("%s=%q: want on or off", EnvFence, v)
	}
	tok, err := fence.FromEnv()
	switch {
	case err != nil && o.fenceOn:
		return nil, o, err
	case err != nil:
		log.Warn("no_fence_token", "error", err)
		tok = fence.Token{Node: os.Getenv(fence.EnvNode)}
	}
	if !o.fenceOn {
		log.Warn("fence_off", "note", "control run: claims are not made, stale writes can land")
	}
	w := &worker{pool: pool, log: log.With("queue", queue), queue: queue, tok: tok, fenceOn: o.fenceOn, exit: os.Exit}
	return w, o, nil
}

// jobsPool is the pool of the jobs' own transactions (worker.jobs): one
// connection per job worked at once, one kept open, no ping on acquire.
func jobsPool(ctx context.Context, url string, maxWorkers int) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = int32(max(maxWorkers, 1))
	cfg.MinConns = 1
	cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	return pgxpool.NewWithConfig(ctx, cfg)
}

// insert inserts count jobs into queue and prints their ids, one a line.
func insert(ctx context.Context, pool *pgxpool.Pool, queue string, count int, workFor time.Duration) error {
	if count < 1 {
		return errors.New("-count must be at least 1")
	}
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{})
	if err != nil {
		return err
	}
	params := make([]river.InsertManyParams, count)
	for i := range params {
		params[i] = river.InsertManyParams{Args: Args{WorkMS: int(workFor.Milliseconds())}, InsertOpts: &river.InsertOpts{Queue: queue}}
	}
	res, err := client.InsertMany(ctx, params)
	if err != nil {
		return err
	}
	for _, r := range res {
		fmt.Println(r.Job.ID)
	}
	return nil
}
