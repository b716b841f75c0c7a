package supervisor

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/regentd/regent/supervisor/diagnosis"
	"github.com/regentd/regent/worker"
)

// WorkerPools are the process-level settings of every queue's worker pool:
// what NewWorkerPools needs beyond each queue's own config.
type WorkerPools struct {
	// Cluster and Node are handed to every guard (its -meta, for the
	// release of a term after the supervisor died).
	Cluster, Node string
	// GuardExe, GuardFile, GuardArgs and HelperFile say which binary runs
	// every guard and which one releases a term (see worker.Spec).
	GuardExe   string
	GuardFile  *os.File
	GuardArgs  []string
	HelperFile *os.File
	// Containment is how the kernel holds each worker's tree to its
	// guard (worker.DetectContainment).
	Containment worker.Containment
	// BackstopGrace: see worker.Spec.BackstopGrace; keep it below the
	// fence margin (regent uses half of it).
	BackstopGrace time.Duration
	// GuardEnv is added to every guard's environment (and, past the
	// worker.GuardEnvPrefix filter, not to the worker's).
	GuardEnv []string
	// Reaper protects the guards from the process's own orphan reaper.
	Reaper *worker.Reaper
}

// NewWorkerPools returns the PoolFactory that runs each queue's workers
// with package worker: a queue with concurrency 0 gets a pool that spawns
// nothing (leadership only); a pool that cannot be built reports its
// error from Run.
func NewWorkerPools(o WorkerPools) PoolFactory {
	return func(spec PoolSpec) Pool {
		if spec.Queue.Concurrency == 0 {
			return leadershipOnlyPool{}
		}
		p, err := worker.NewPool(o.poolConfig(spec))
		if err != nil {
			return failedPool{err: fmt.Errorf("queue %s: %w", spec.Queue.Name, err)}
		}
		return workerPool{p: p, o: o}
	}
}

// poolConfig is the worker.PoolConfig of spec.
func (o WorkerPools) poolConfig(spec PoolSpec) worker.PoolConfig {
	q := spec.Queue
	env := append(append(os.Environ(), spec.Env...), o.GuardEnv...)
	return worker.PoolConfig{
		Spec: worker.Spec{
			Command:       q.Command,
			Env:           env,
			StopTimeout:   q.StopTimeout,
			GuardExe:      o.GuardExe,
			GuardFile:     o.GuardFile,
			GuardArgs:     o.GuardArgs,
			HelperFile:    o.HelperFile,
			Containment:   o.Containment,
			BackstopGrace: o.BackstopGrace,
			GuardMeta: map[string]string{
				"cluster": o.Cluster, "queue": q.Name, "node": o.Node,
				"term": strconv.FormatInt(spec.Term, 10),
			},
			Logger: spec.Logger,
			Reaper: o.Reaper,
		},
		Concurrency: q.Concurrency,
		MaxRSSMB:    q.MaxRSSMB,
		Restart: worker.RestartPolicy{
			InitialBackoff: q.Restart.InitialBackoff,
			MaxBackoff:     q.Restart.MaxBackoff,
			ResetAfter:     q.Restart.ResetAfter,
			MaxCrashes:     q.Restart.MaxCrashes,
		},
		Liveness: worker.Liveness{
			HeartbeatTimeout: q.Liveness.HeartbeatTimeout,
			StartupGrace:     q.Liveness.StartupGrace,
		},
		Deadline: spec.Deadline,
		Logger:   spec.Logger,
		Events:   poolEventHook(spec),
	}
}

// restartReason is the regent_worker_restarts_total reason of an event,
// or "" when the event restarts nothing.
func restartReason(e worker.Event) string {
	switch e.Kind {
	case worker.EventStartFailed:
		return "start_failed"
	case worker.EventExited:
		switch e.Cause {
		case worker.ExitCrash, worker.ExitClean, worker.ExitRSSWatchdog, worker.ExitWedged:
			return e.Cause
		}
	}
	return ""
}

// poolEventHook turns pool events (already logged by the pool) into
// restart metrics and member-record republishing.
func poolEventHook(spec PoolSpec) func(worker.Event) {
	return func(e worker.Event) {
		if r := restartReason(e); r != "" && spec.Events != nil {
			spec.Events(r)
		}
		if spec.Changed != nil {
			spec.Changed()
		}
	}
}

// workerPool is a worker.Pool as the supervisor's Pool.
type workerPool struct {
	p *worker.Pool
	o WorkerPools
}

func (w workerPool) Restart(ctx context.Context, rolling bool) error {
	return w.p.Restart(ctx, rolling)
}

// Reconfigure hands the pool the config of spec; a new concurrency needs
// a new pool.
func (w workerPool) Reconfigure(spec PoolSpec) bool {
	if spec.Queue.Concurrency == 0 {
		return false
	}
	return w.p.Reconfigure(w.o.poolConfig(spec)) == nil
}

func (w workerPool) Run(ctx context.Context) error { return w.p.Run(ctx) }
func (w workerPool) SetDeadline(t time.Time)       { _ = w.p.ExtendDeadline(t) }

// Fence kills every tree and waits briefly; the guards and their
// backstop bound the rest.
func (w workerPool) Fence() {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = w.p.Fence(ctx)
}

func (w workerPool) Workers() []diagnosis.WorkerInfo {
	st := w.p.Status()
	out := make([]diagnosis.WorkerInfo, len(st))
	for i, s := range st {
		state := string(s.State)
		if s.Degraded {
			state = "degraded"
		}
		out[i] = diagnosis.WorkerInfo{Index: s.Index, PID: s.PID, State: state, Restarts: s.Restarts,
			Crashes: s.Crashes, RSSBytes: s.RSSBytes, RSSLoop: s.RSSLoop, Wedged: s.Wedged}
	}
	return out
}

// failedPool reports a pool that could not be built.
type failedPool struct{ err error }

func (f failedPool) Run(ctx context.Context) error       { return f.err }
func (f failedPool) SetDeadline(time.Time)               {}
func (f failedPool) Fence()                              {}
func (f failedPool) Workers() []diagnosis.WorkerInfo     { return nil }
func (f failedPool) Restart(context.Context, bool) error { return f.err }
func (f failedPool) Reconfigure(PoolSpec) bool           { return false }

// leadershipOnlyPool is the pool of a queue with concurrency 0: leadership
// is taken, renewed and published, but no guard or worker is spawned, so
// there is nothing to fence, restart or report as a crash loop.
type leadershipOnlyPool struct{}

func (leadershipOnlyPool) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
func (leadershipOnlyPool) SetDeadline(time.Time)               {}
func (leadershipOnlyPool) Fence()                              {}
func (leadershipOnlyPool) Workers() []diagnosis.WorkerInfo     { return []diagnosis.WorkerInfo{} }
func (leadershipOnlyPool) Restart(context.Context, bool) error { return nil }

// Reconfigure keeps a leadership-only pool while the concurrency stays 0.
func (leadershipOnlyPool) Reconfigure(spec PoolSpec) bool { return spec.Queue.Concurrency == 0 }
