package supervisor

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/regentd/regent/election"
)

// leaderRun is one leadership, from its start to its resign: the state
// of the lead loop, owned by the queue's goroutine.
type leaderRun struct {
	q    *queueRunner
	b    election.Backend
	l    election.Leadership
	name string
	log  hclog.Logger

	// deadline is ValidUntil - FenceMargin, on the suspend-counting clock
	// (Config.Now): the workers' and this loop's.
	deadline time.Time
	fence    *time.Timer
	// began is when the leadership was won, on the wall clock (compared
	// with a restart request's time).
	began time.Time

	// The term's pool: nil while none runs (paused, before the operator
	// records are known, or between two pools). A leadership may run
	// several pools one after the other (pause and resume, a reload that
	// changes the concurrency); they never overlap.
	pool     Pool
	poolConf *queueSettings // the settings pool was built or reconfigured with
	poolDone chan error
	poolEnd  bool
	stopPool context.CancelFunc
	// poolStopping: the loop asked the pool to stop (pause, replace).
	poolStopping bool

	// paused: this leader obeys a pause of the queue.
	paused bool
	// restart is the restart under way off the loop (nil: none), its
	// outcome arriving on restartDone; doneID is the last restart request
	// carried out.
	restart       *restartJob
	restartDone   chan error
	cancelRestart context.CancelFunc
	doneID        string
	// published: the settings whose payload the leader record carries.
	published *queueSettings
	// publishing serializes the republishing of the leader payload after
	// a reload (off the loop); end waits for it.
	publishing sync.WaitGroup
	publishMu  sync.Mutex

	// handover is the outcome of a step-down request under way (a
	// yield to a named node), made off the loop so that renewals, a loss
	// and the fence timer are handled while the backend answers.
	handover       chan bool
	cancelHandover context.CancelFunc
}

// restartJob is one restart of the term's workers in place: an operator's
// request (id) or a reload (id "").
type restartJob struct {
	id      string
	rolling bool
	reason  string // "request" or "config_reload"
}

// lead carries out the leader's duties for one leadership and returns why
// it ended. When it returns, every worker of the term is dead and the
// leadership is resigned.
func (q *queueRunner) lead(ctx context.Context, b election.Backend, l election.Leadership) string {
	r := &leaderRun{q: q, b: b, l: l, name: q.queue.Name, published: q.campaigned}
	r.log = q.log.With("term", l.Term())
	r.deadline = l.ValidUntil().Add(-q.cfg.FenceMargin)
	if !q.now().Before(r.deadline) {
		r.log.Warn("leadership_lost", "reason", reasonDeadline, "detail", "lease already past its deadline when won")
		q.resign(ctx, l, r.log)
		return reasonDeadline
	}
	r.start(ctx)
	reason := r.loop(ctx)
	r.stopWorkers(reason)
	r.end(ctx, reason)
	return reason
}

// poolSpec is the spec of a pool of the term with settings s.
func (r *leaderRun) poolSpec(s *queueSettings) PoolSpec {
	q, cfg := r.q, r.q.cfg
	env := []string{
		"REGENT_CLUSTER=" + cfg.Identity.Cluster,
		"REGENT_QUEUE=" + r.name,
		"REGENT_NODE=" + cfg.Identity.Node,
		"REGENT_TERM=" + strconv.FormatInt(r.l.Term(), 10),
		"REGENT_FENCE_KEY=" + s.queue.EffectiveFenceKey(),
	}
	if q.fenceOwner != nil {
		env = append(env, "REGENT_FENCE_OWNER="+q.fenceOwner())
	}
	return PoolSpec{
		Queue: s.queue, Term: r.l.Term(), Deadline: r.deadline, Env: env,
		Logger: r.log,
		Events: func(reason string) {
			if cfg.Metrics != nil {
				cfg.Metrics.WorkerRestarts.WithLabelValues(r.name, reason).Inc()
			}
			q.members.wake()
		},
		Changed: q.members.wake,
	}
}

// start records the leadership and starts the term's pool, unless the
// queue is paused or its operator records are not known yet (apply).
func (r *leaderRun) start(ctx context.Context) {
	q, cfg, term := r.q, r.q.cfg, r.l.Term()
	r.began = q.clock.Now()
	r.poolEnd = true // no pool yet
	// A yield or step-down asked of an earlier leadership is stale.
	select {
	case <-q.yield:
	default:
	}
	select {
	case <-q.stepDown:
	default:
	}
	now := q.now()
	q.status.Store(&queueStatus{role: election.RoleLeader, term: term, since: now, deadline: r.deadline})
	if m := cfg.Metrics; m != nil {
		m.setLeader(r.name, true, term)
		m.LeaderChanges.WithLabelValues(r.name).Inc()
		m.ConfigConflicts.WithLabelValues(r.name).Set(0)
	}
	r.log.Info("leadership_acquired", "deadline_in", r.deadline.Sub(now).Round(time.Millisecond).String())
	q.members.wake()
	r.fence = time.NewTimer(r.deadline.Sub(now))
	r.handover = make(chan bool, 1)
	r.restartDone = make(chan error, 1)
	q.setLeaseGauge(r.deadline)
	// No pool before a read of the operator records begun after the
	// win (apply): ask for one.
	q.awaitingControl.Store(true)
	q.controls.request()
	r.apply(ctx)
}

// renewed moves the deadline after a renewal.
func (r *leaderRun) renewed() {
	d := r.l.ValidUntil().Add(-r.q.cfg.FenceMargin)
	if !d.After(r.deadline) {
		return
	}
	r.deadline = d
	if r.pool != nil {
		r.pool.SetDeadline(d)
	}
	r.fence.Reset(d.Sub(r.q.now()))
	update(&r.q.status, func(s queueStatus) queueStatus { s.deadline = d; return s })
	r.q.setLeaseGauge(d)
}

// expired reports whether the deadline has passed; if not, it re-arms the
// fence timer for what is left (a timer counts CLOCK_MONOTONIC, the
// deadline also the time the host was suspended).
func (r *leaderRun) expired() bool {
	left := r.deadline.Sub(r.q.now())
	if left <= 0 {
		return true
	}
	r.fence.Reset(left)
	return false
}

// loop serves the leadership until it must end, and says why.
func (r *leaderRun) loop(ctx context.Context) string {
	gauge := time.NewTicker(time.Second)
	defer gauge.Stop()
	yield := r.q.yield
	for {
		select {
		case <-r.l.Renewed():
			r.renewed()
		case <-r.fence.C:
			if r.expired() {
				return reasonDeadline
			}
		case <-r.l.Done():
			return reasonLost
		case <-ctx.Done():
			return r.stopReason()
		case <-r.q.stepDown:
			// The observer saw a step-down request for this very term.
			r.log.Info("handing over", "why", "step-down requested")
			return reasonStepDown
		case y := <-yield:
			if y.to == "" {
				r.log.Info("handing over", "why", y.why)
				return reasonStepDown
			}
			yield = nil // one handover request at a time
			r.requestHandover(ctx, y)
		case ok := <-r.handover:
			r.cancelHandover()
			r.cancelHandover = nil
			if ok {
				return reasonStepDown
			}
			yield = r.q.yield
		case err := <-r.poolDone:
			r.poolEnd = true
			if r.poolStopping {
				r.poolStopped()
				r.apply(ctx)
				continue
			}
			r.log.Error("worker pool ended on its own", "error", err)
			return reasonPool
		case <-r.q.wake:
			r.apply(ctx)
		case err := <-r.restartDone:
			r.restartFinished(err)
			r.apply(ctx)
		case <-gauge.C:
			// The fence timer counts CLOCK_MONOTONIC, which stops while
			// the host is suspended: after a resume it would fire late by
			// the suspension. Look at the deadline on every tick too.
			if !r.q.now().Before(r.deadline) {
				return reasonDeadline
			}
			r.q.setLeaseGauge(r.deadline)
		}
	}
}

// stopReason tells a clean stop from a loss noticed at the stop: the
// session may have ended under us (frozen past the lease, connection
// killed).
func (r *leaderRun) stopReason() string {
	select {
	case <-r.l.Done():
		return reasonLost
	default:
	}
	if !r.q.now().Before(r.deadline) {
		return reasonDeadline
	}
	return reasonStop
}

// requestHandover writes the step-down request naming y.to off the loop;
// its outcome arrives on r.handover: true once written, when the leader
// hands over; false leaves the queue here (balancing tries again later).
func (r *leaderRun) requestHandover(ctx context.Context, y yieldReq) {
	hctx, cancel := context.WithCancel(ctx)
	r.cancelHandover = cancel
	go func() { // awaited by end (or the loop) through r.handover
		ok := r.q.requestHandover(hctx, r.b, y.to, r.log)
		if ok {
			r.log.Info("handing over", "why", y.why, "to", y.to)
		}
		r.handover <- ok
	}()
}

// stopWorkers stops the pool. On a loss the deadline can only shrink:
// another replica may lead once the backend's own deadline has passed.
func (r *leaderRun) stopWorkers(reason string) {
	if r.cancelRestart != nil {
		r.cancelRestart()
	}
	switch reason {
	case reasonLost:
		// The backend says another replica may lead soon (at once, for an
		// etcd key deleted by someone else): kill now, not at the deadline.
		r.fencePool()
		r.log.Warn("leadership_lost", "reason", reason, "detail", "backend reports the leadership lost; workers fenced")
	case reasonDeadline:
		r.fencePool()
		r.log.Warn("leadership_lost", "reason", reason, "detail", "no renewal confirmed before the local deadline; workers fenced")
	default:
		if r.pool != nil {
			r.log.Info("stopping workers", "reason", reason)
		}
	}
	if r.pool != nil {
		r.stopPool()
	}
	graceful := isGraceful(reason)
	for !r.poolEnd {
		select {
		case <-r.poolDone:
			r.poolEnd = true
		case <-r.l.Renewed():
			if graceful {
				r.renewed()
			}
		case <-r.fence.C:
			if r.expired() {
				r.fencePool()
			}
		}
	}
	if r.restart != nil {
		<-r.restartDone
		r.restart = nil
	}
}

// fencePool kills the pool's workers now, if a pool runs.
func (r *leaderRun) fencePool() {
	if r.pool != nil {
		r.pool.Fence()
	}
}

// isGraceful reports whether a leadership ending for reason hands over
// cleanly (workers stopped with SIGTERM, renewals still honoured).
func isGraceful(reason string) bool {
	return reason == reasonStop || reason == reasonStepDown || reason == reasonPool
}

// end resigns once every worker is dead, so that the next leader's
// workers never overlap ours, and records the end.
func (r *leaderRun) end(ctx context.Context, reason string) {
	q := r.q
	r.fence.Stop()
	if r.cancelHandover != nil {
		r.cancelHandover()
		<-r.handover
	}
	r.publishing.Wait()
	q.awaitingControl.Store(false)
	q.status.Store(&queueStatus{role: election.RoleFollower})
	if m := q.cfg.Metrics; m != nil {
		m.setLeader(r.name, false, 0)
		m.Workers.WithLabelValues(r.name).Set(0)
		m.LeaseRemaining.WithLabelValues(r.name).Set(0)
	}
	q.resign(ctx, r.l, r.log)
	if isGraceful(reason) {
		r.log.Info("leadership_released", "reason", reason)
	}
	q.members.wake()
}
