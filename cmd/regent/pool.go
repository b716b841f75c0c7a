package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/supervisor"
	"github.com/regentd/regent/worker"
)

// envGuardRelease carries the backend settings a worker guard needs to
// release its term after the supervisor died (see releaseTerm): the
// fallback guard reads it itself, the lean guard's `regent release-term`
// helper inherits it. It is removed from the worker's own environment by
// the guard.
const envGuardRelease = worker.GuardEnvPrefix + "RELEASE"

// guardReleaseConfig is what a guard needs to open the backend read-only.
type guardReleaseConfig struct {
	Backend  string                `json:"backend"`
	Cluster  string                `json:"cluster"`
	Etcd     config.EtcdConfig     `json:"etcd"`
	Postgres config.PostgresConfig `json:"postgres"`
}

// newPoolFactory adapts the worker package's Pool to the supervisor.
func newPoolFactory(cfg *config.Config, guard guardBinary, containment worker.Containment, reaper *worker.Reaper) supervisor.PoolFactory {
	rel, _ := json.Marshal(guardReleaseConfig{Backend: cfg.Backend, Cluster: cfg.Cluster, Etcd: cfg.Etcd, Postgres: cfg.Postgres})
	return func(spec supervisor.PoolSpec) supervisor.Pool {
		q := spec.Queue
		if q.Concurrency == 0 {
			return leadershipOnlyPool{}
		}
		causes := &exitCauses{pending: map[int]string{}}
		env := append(os.Environ(), spec.Env...)
		env = append(env, envGuardRelease+"="+string(rel))
		pc := worker.PoolConfig{
			Spec: worker.Spec{
				Command:     q.Command,
				Env:         env,
				StopTimeout: q.StopTimeout,
				GuardExe:    guard.spec.GuardExe,
				GuardFile:   guard.spec.GuardFile,
				GuardArgs:   guard.spec.GuardArgs,
				HelperFile:  guard.spec.HelperFile,
				Containment: containment,
				// The backstop acts before another replica may lead.
				BackstopGrace: cfg.FenceMargin / 2,
				GuardMeta: map[string]string{
					"cluster": cfg.Cluster, "queue": q.Name, "node": cfg.NodeID,
					"term": strconv.FormatInt(spec.Term, 10),
				},
				Logger: spec.Logger,
				Reaper: reaper,
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
			Events:   poolEvents(spec, causes),
		}
		p, err := worker.NewPool(pc)
		if err != nil {
			return &failedPool{err: fmt.Errorf("queue %s: %w", q.Name, err)}
		}
		return &poolAdapter{p: p, causes: causes}
	}
}

// Likely causes of a worker's exit, in the worker_exited event.
const (
	causeCrash       = "crash"
	causeExit        = "exit"
	causeRSSWatchdog = "rss_watchdog"
	causeWedged      = "wedged"
	causeFenced      = "fenced"
	causeStop        = "stop"
)

// exitCauses remembers why each worker slot is being killed, so that its
// exit event names the likely cause.
type exitCauses struct {
	mu       sync.Mutex
	pending  map[int]string
	stopping bool
	fenced   bool
}

func (c *exitCauses) set(index int, cause string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending[index] = cause
}

func (c *exitCauses) take(e worker.Event) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	cause, ok := c.pending[e.Index]
	delete(c.pending, e.Index)
	switch {
	case ok:
		return cause
	case c.fenced || e.Exit.Cause == worker.CauseDeadline || e.Exit.Cause == worker.CauseOrphaned:
		return causeFenced
	case c.stopping:
		return causeStop
	case e.Crash:
		return causeCrash
	default:
		return causeExit
	}
}

// poolEvents turns pool events into log events and restart metrics.
func poolEvents(spec supervisor.PoolSpec, causes *exitCauses) func(worker.Event) {
	log := spec.Logger
	restart := func(reason string) {
		if spec.Events != nil {
			spec.Events(reason)
		}
	}
	return func(e worker.Event) {
		if spec.Changed != nil {
			defer spec.Changed()
		}
		switch e.Kind {
		case worker.EventStarted:
			log.Info("worker_spawned", "worker", e.Index, "pid", e.PID)
		case worker.EventExited:
			cause := causes.take(e)
			sig := ""
			if e.Exit.Signal != 0 {
				sig = e.Exit.Signal.String()
			}
			log.Info("worker_exited", "worker", e.Index, "pid", e.PID, "code", e.Exit.Code, "signal", sig, "cause", cause)
			switch cause {
			case causeCrash, causeExit, causeRSSWatchdog, causeWedged:
				restart(cause)
			}
		case worker.EventStartFailed:
			log.Error("worker_start_failed", "worker", e.Index, "error", e.Err)
			restart("start_failed")
		case worker.EventBackoff:
			log.Warn("backoff", "worker", e.Index, "delay", e.Delay.Round(time.Millisecond).String())
		case worker.EventDegraded:
			log.Error("crash_loop", "worker", e.Index, "detail", "max_crashes consecutive crashes; retrying at the backoff cap")
		case worker.EventRecovered:
			log.Info("crash_loop_recovered", "worker", e.Index)
		case worker.EventRSSWarning:
			log.Warn("rss_warning", "worker", e.Index, "pid", e.PID, "rss_mb", e.RSSBytes>>20, "limit_mb", e.LimitBytes>>20)
		case worker.EventRSSKill:
			causes.set(e.Index, causeRSSWatchdog)
			log.Warn("rss_watchdog_kill", "worker", e.Index, "pid", e.PID, "rss_mb", e.RSSBytes>>20, "limit_mb", e.LimitBytes>>20)
		case worker.EventRSSLoop:
			log.Error("rss_loop", "worker", e.Index, "limit_mb", e.LimitBytes>>20)
		case worker.EventWedgeRestart:
			causes.set(e.Index, causeWedged)
			log.Warn("wedged_restart", "worker", e.Index, "pid", e.PID)
		case worker.EventWedged:
			log.Error("wedged", "worker", e.Index, "pid", e.PID, "detail", "restart budget spent; only reported")
		}
	}
}

type poolAdapter struct {
	p      *worker.Pool
	causes *exitCauses
}

func (a *poolAdapter) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		a.causes.mu.Lock()
		a.causes.stopping = true
		a.causes.mu.Unlock()
	})
	defer stop()
	return a.p.Run(ctx)
}

func (a *poolAdapter) SetDeadline(t time.Time) { _ = a.p.ExtendDeadline(t) }

func (a *poolAdapter) Fence() {
	a.causes.mu.Lock()
	a.causes.fenced = true
	a.causes.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = a.p.Fence(ctx)
}

func (a *poolAdapter) Workers() []supervisor.WorkerInfo {
	st := a.p.Status()
	out := make([]supervisor.WorkerInfo, len(st))
	for i, s := range st {
		state := string(s.State)
		if s.Degraded {
			state = "degraded"
		}
		out[i] = supervisor.WorkerInfo{Index: s.Index, PID: s.PID, State: state, Restarts: s.Restarts,
			Crashes: s.Crashes, RSSBytes: s.RSSBytes, RSSLoop: s.RSSLoop, Wedged: s.Wedged}
	}
	return out
}

// failedPool reports a pool that could not be built.
type failedPool struct{ err error }

func (f *failedPool) Run(ctx context.Context) error    { return f.err }
func (f *failedPool) SetDeadline(time.Time)            {}
func (f *failedPool) Fence()                           {}
func (f *failedPool) Workers() []supervisor.WorkerInfo { return nil }

// leadershipOnlyPool is the pool of a queue with concurrency 0: leadership
// is taken, renewed and published, but no guard or worker is spawned, so
// there is nothing to fence, restart or report as a crash loop.
type leadershipOnlyPool struct{}

func (leadershipOnlyPool) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
func (leadershipOnlyPool) SetDeadline(time.Time)            {}
func (leadershipOnlyPool) Fence()                           {}
func (leadershipOnlyPool) Workers() []supervisor.WorkerInfo { return []supervisor.WorkerInfo{} }
