package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/supervisor"
	"github.com/regentd/regent/worker"
)

// envGuardRelease carries the backend settings a worker guard needs to
// release its term after the supervisor died (see guardRelease). It is
// removed from the worker's own environment by the guard.
const envGuardRelease = worker.GuardEnvPrefix + "RELEASE"

// guardReleaseConfig is what a guard needs to open the backend read-only.
type guardReleaseConfig struct {
	Backend  string                `json:"backend"`
	Cluster  string                `json:"cluster"`
	Etcd     config.EtcdConfig     `json:"etcd"`
	Postgres config.PostgresConfig `json:"postgres"`
}

// newPoolFactory adapts the worker package's Pool to the supervisor.
func newPoolFactory(cfg *config.Config, guardExe string, reaper *worker.Reaper) supervisor.PoolFactory {
	rel, _ := json.Marshal(guardReleaseConfig{Backend: cfg.Backend, Cluster: cfg.Cluster, Etcd: cfg.Etcd, Postgres: cfg.Postgres})
	return func(spec supervisor.PoolSpec) supervisor.Pool {
		q := spec.Queue
		env := append(os.Environ(), spec.Env...)
		env = append(env, envGuardRelease+"="+string(rel))
		pc := worker.PoolConfig{
			Spec: worker.Spec{
				Command:     q.Command,
				Env:         env,
				StopTimeout: q.StopTimeout,
				GuardExe:    guardExe,
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
			Events:   poolEvents(spec),
		}
		p, err := worker.NewPool(pc)
		if err != nil {
			return &failedPool{err: fmt.Errorf("queue %s: %w", q.Name, err)}
		}
		return &poolAdapter{p: p}
	}
}

// poolEvents turns pool events into log events and restart metrics.
func poolEvents(spec supervisor.PoolSpec) func(worker.Event) {
	log := spec.Logger
	return func(e worker.Event) {
		if spec.Changed != nil {
			defer spec.Changed()
		}
		switch e.Kind {
		case worker.EventStarted:
			log.Info("worker_spawned", "worker", e.Index, "pid", e.PID)
		case worker.EventExited:
			log.Info("worker_exited", "worker", e.Index, "pid", e.PID, "code", e.Exit.Code, "signal", e.Exit.Signal,
				"cause", string(e.Exit.Cause), "crash", e.Crash)
			if spec.Events != nil {
				reason := "exit"
				if e.Crash {
					reason = "crash"
				}
				spec.Events(reason)
			}
		case worker.EventStartFailed:
			log.Error("worker_start_failed", "worker", e.Index, "error", e.Err)
			if spec.Events != nil {
				spec.Events("start_failed")
			}
		case worker.EventBackoff:
			log.Warn("backoff", "worker", e.Index, "delay", e.Delay.Round(time.Millisecond).String())
		case worker.EventDegraded:
			log.Error("crash_loop", "worker", e.Index, "detail", "max_crashes consecutive crashes; retrying at the backoff cap")
		case worker.EventRecovered:
			log.Info("crash_loop_recovered", "worker", e.Index)
		case worker.EventRSSWarning:
			log.Warn("rss_warning", "worker", e.Index, "pid", e.PID, "rss_mb", e.RSSBytes>>20, "limit_mb", e.LimitBytes>>20)
		case worker.EventRSSKill:
			log.Warn("rss_watchdog_kill", "worker", e.Index, "pid", e.PID, "rss_mb", e.RSSBytes>>20, "limit_mb", e.LimitBytes>>20)
			if spec.Events != nil {
				spec.Events("rss_watchdog")
			}
		case worker.EventRSSLoop:
			log.Error("rss_loop", "worker", e.Index, "limit_mb", e.LimitBytes>>20)
		case worker.EventWedgeRestart:
			log.Warn("wedged_restart", "worker", e.Index, "pid", e.PID)
			if spec.Events != nil {
				spec.Events("wedged")
			}
		case worker.EventWedged:
			log.Error("wedged", "worker", e.Index, "pid", e.PID, "detail", "restart budget spent; only reported")
		}
	}
}

type poolAdapter struct{ p *worker.Pool }

func (a *poolAdapter) Run(ctx context.Context) error { return a.p.Run(ctx) }
func (a *poolAdapter) SetDeadline(t time.Time)       { _ = a.p.ExtendDeadline(t) }
func (a *poolAdapter) Fence() {
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
