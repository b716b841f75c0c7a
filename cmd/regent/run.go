package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/election"
	"github.com/regentd/regent/supervisor"
	"github.com/regentd/regent/worker"
)

const runLong = `Campaign for leadership of each queue and, while leading a queue, run and
supervise its workers. Followers stand by hot and report config conflicts.

Every worker gets REGENT_CLUSTER, REGENT_QUEUE, REGENT_NODE, REGENT_TERM,
REGENT_WORKER, and its fence token REGENT_FENCE_KEY and REGENT_FENCE_OWNER
(see 'regent fence --help'), in its environment, and runs under a guard that
kills it when the leader's lease deadline passes, even if this process is
frozen or killed.

Exit codes:
  0  clean stop (SIGTERM/SIGINT: workers stopped, leadership resigned)
  1  usage or config error, or backend unreachable at start
  2  --exclusive and another replica already leads a queue (the message
     names that leader, its host and its config)`

func newRunCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run [flags] [-- command args...]",
		Short: "Campaign for queues and supervise their workers while leading",
		Long:  runLong,
		Example: `  regent run --backend etcd --etcd-endpoints 10.0.0.5:2379 --queue default \
      --concurrency 2 --max-rss 16384 -- ./jobs-worker --queue default
  DATABASE_URL=postgres://regent@db/app regent run --backend postgres --config /etc/regent.yaml`,
		RunE: runRun,
	}
	config.RegisterFlags(cmd.Flags(), config.ScopeRun)
	return cmd
}

func commandAfterDash(cmd *cobra.Command, args []string) ([]string, error) {
	dash := cmd.ArgsLenAtDash()
	if dash < 0 {
		if len(args) > 0 {
			return nil, fmt.Errorf("unexpected argument %q: put the worker command after --, e.g. regent run --queue q -- ./worker", args[0])
		}
		return nil, nil
	}
	if dash > 0 {
		return nil, fmt.Errorf("unexpected argument %q before --: put the worker command after --", args[0])
	}
	return args, nil
}

func runRun(cmd *cobra.Command, args []string) error {
	command, err := commandAfterDash(cmd, args)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(cmd, command, true)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, cmd.ErrOrStderr()).With("node", cfg.NodeID)
	if cfg.PIDFile != "" {
		if err := writePIDFile(cfg.PIDFile); err != nil {
			return err
		}
		defer os.Remove(cfg.PIDFile)
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	reaper, stopReaper := startReaper(ctx, log)
	defer stopReaper()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := supervisor.NewMetrics(reg)
	registerBuildInfo(reg)

	// Guards run the lean guard beside this binary, or this binary, as
	// opened now, even after a package upgrade replaced the files: they
	// must speak this supervisor's protocol.
	guard := openGuardBinary(ctx, log)
	defer guard.Close()
	containment, err := chooseContainment(ctx, cfg, guard.spec, log)
	if err != nil {
		return err
	}
	// Listen before the supervisor starts: its member record publishes
	// the address actually listened on.
	var ln net.Listener
	if cfg.HTTPAddr != "" {
		if ln, err = listenHTTP(cfg.HTTPAddr, cfg.HTTPAddrExplicit, log); err != nil {
			return err
		}
	}
	sup, err := newSupervisor(cfg, ln, newPoolFactory(cfg, guard, containment, reaper), metrics, log)
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return err
	}
	if ln != nil {
		defer startHTTP(ln, reg, sup, log).Close()
	}
	if cfg.Fence.PostgresURL != "" {
		watchCtx, stopWatch := context.WithCancel(ctx)
		wait := startFenceWatch(watchCtx, newFenceWatch(cfg.Fence.PostgresURL, sup.Queues, sup.FenceOwner, reg, log))
		defer func() { stopWatch(); wait() }()
	}
	logStarted(cfg, ln, guard, log)

	// SIGHUP (systemctl reload) re-reads the config file.
	reloadCtx, stopReload := context.WithCancel(ctx)
	waitReload := startReloader(reloadCtx, &reloader{cmd: cmd, command: command, running: cfg, sup: sup, log: log})
	err = sup.Run(ctx)
	stopReload()
	waitReload()
	return runExit(err, log)
}

// startReaper makes this process a child subreaper and reaps the orphans
// re-parented to it (or to it as PID 1 in a container), its own children
// excepted; stop ends it. Without the subreaper, reaper is nil.
func startReaper(ctx context.Context, log hclog.Logger) (reaper *worker.Reaper, stop func()) {
	if err := becomeSubreaper(); err != nil {
		log.Warn("cannot become a child subreaper; orphaned grandchildren of workers are reaped by init", "error", err)
		return nil, func() {}
	}
	reaper = worker.NewReaper()
	reapCtx, stopReaper := context.WithCancel(context.WithoutCancel(ctx))
	reaperDone := make(chan struct{})
	go func() { defer close(reaperDone); _ = reaper.Run(reapCtx, time.Second) }()
	return reaper, func() { stopReaper(); <-reaperDone }
}

// newSupervisor builds the supervisor of cfg; ln, when not nil, is the
// HTTP listener whose address the member record publishes.
func newSupervisor(cfg *config.Config, ln net.Listener, pools supervisor.PoolFactory, metrics *supervisor.Metrics, log hclog.Logger) (*supervisor.Supervisor, error) {
	httpAddr := ""
	if ln != nil {
		httpAddr = ln.Addr().String()
	}
	opts := electionOptions(cfg, false)
	return supervisor.New(supervisor.Config{
		Identity:  opts.Identity,
		Version:   regentVersion(),
		Timing:    opts.Timing,
		Queues:    cfg.Queues,
		Exclusive: cfg.Exclusive,
		Balance:   cfg.Balance,
		HTTPAddr:  httpAddr,
		Dial: func(ctx context.Context) (election.Backend, error) {
			return openBackend(ctx, cfg, opts, log)
		},
		NewPool: pools,
		Logger:  log,
		Metrics: metrics,
	})
}

// logStarted logs the started event with the effective config of every
// queue.
func logStarted(cfg *config.Config, ln net.Listener, guard guardBinary, log hclog.Logger) {
	httpAddr := ""
	if ln != nil {
		httpAddr = ln.Addr().String()
	}
	queues := map[string]any{}
	for _, q := range cfg.Queues {
		queues[q.Name] = config.Document(q.Publish(cfg.LeaseTTL))
	}
	log.Info("started", "version", regentVersion(), "cluster", cfg.Cluster, "backend", cfg.Backend,
		"pid", os.Getpid(), "guard", guard.name(), "lease_ttl", cfg.LeaseTTL.String(), "http_addr", httpAddr, "queues", queues)
}

// runExit maps the supervisor's end to run's exit: 0 on a clean stop, 2
// when --exclusive found the queue led, 1 otherwise.
func runExit(err error, log hclog.Logger) error {
	var led *supervisor.AlreadyLedError
	switch {
	case errors.As(err, &led):
		log.Error("already led", "queue", led.Queue, "leader", led.Leader.Node, "host", led.Leader.Host)
		return withCode(exitExisting, err)
	case err != nil:
		return withCode(exitError, fmt.Errorf("%w", err))
	}
	log.Info("stopped")
	return nil
}

func writePIDFile(path string) error {
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("pid file %s: %w (it is a local convenience only: fix the path or drop --pid-file)", path, err)
	}
	return nil
}
