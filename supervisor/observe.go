package supervisor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/control"
	"github.com/regentd/regent/election"
	"github.com/regentd/regent/supervisor/diagnosis"
)

// observer turns the backend's records into a diagnosis.Snapshot and acts
// on package diagnosis's report: metrics, one log line per new anomaly,
// its runners' config conflicts, step-down requests relayed to the
// runners; it feeds the balancer and carries out its decisions. It runs
// on its own goroutine and owns what it remembers between observations
// (the problems reported, the balancer).
type observer struct {
	cfg      *Config // read only
	log      hclog.Logger
	clock    clock
	runners  []*queueRunner
	members  *memberPublisher
	balancer *balancer
	// set returns the current runners (a reload adds or removes some);
	// refreshRunners reads it at each observation.
	set func() []*queueRunner
	// lastControl is the operator records of the last observation, for
	// the runners a reload adds (nil before the first).
	lastControl atomic.Pointer[controlRead]
	// reported: problem key -> last message, to log once per change
	// (within a session).
	reported map[string]string
	// drained: this replica obeys a drain of its node (drained and
	// undrained are logged on a change).
	drained bool
}

func newObserver(cfg *Config, c clock, runners []*queueRunner, members *memberPublisher) *observer {
	return &observer{
		cfg: cfg, log: cfg.Logger, clock: c, runners: runners, members: members,
		balancer: newBalancer(cfg),
	}
}

// run watches the cluster's records and reports, from their diagnosis,
// conflicts, split brain and stale workers; it also relays step-down
// requests. It returns an *AlreadyLedError with Exclusive. It closes
// observed once the first observation is done (or failed), or when it
// returns.
func (o *observer) run(ctx context.Context, b election.Backend, observed chan<- struct{}) error {
	var once sync.Once
	first := func() { once.Do(func() { close(observed) }) }
	defer first()
	changes := b.Changes(ctx)
	// A slow safety net in case a wake-up is missed; the backend's
	// notifications are the fast path.
	tick := time.NewTicker(observeTick(o.cfg.Timing))
	defer tick.Stop()
	o.reported = map[string]string{} // a new session reports afresh
	for {
		began := o.clock.Now()
		if err := o.observeOnce(ctx, b); err != nil {
			var led *AlreadyLedError
			if errors.As(err, &led) {
				return err
			}
			if ctx.Err() != nil {
				return nil
			}
			o.cfg.Metrics.backendError()
			o.log.Debug("observe failed", "error", err)
		}
		first()
		// Rest as long as the observation took (at most a second) before
		// the next: with thousands of queues an observation reads
		// megabytes, and a cluster busy settling changes all the time. A
		// small cluster observes within milliseconds of a change.
		if sleepCtx(ctx, min(o.clock.Now().Sub(began), time.Second)) != nil {
			return nil
		}
		if !o.wait(ctx, changes, tick.C) {
			return nil
		}
	}
}

// wait waits until the next observation is due: a change, the
// safety-net tick, or the balance's recheck time. It reports false when
// ctx ends or changes closes.
func (o *observer) wait(ctx context.Context, changes <-chan struct{}, tick <-chan time.Time) bool {
	var recheck <-chan time.Time
	if at := o.balancer.recheck(); !at.IsZero() {
		fired, stop := o.clock.NewTimer(at.Sub(o.clock.Now()))
		defer stop()
		recheck = fired
	}
	select {
	case <-ctx.Done():
		return false
	case _, ok := <-changes:
		return ok
	case <-tick:
	case <-recheck:
	}
	return true
}

// observeTick is the period of the observer's safety-net reads.
func observeTick(t election.Timing) time.Duration {
	return max(t.LeaseTTL, 5*time.Second)
}

// controlRead is one read of the operator records, begun at at.
type controlRead struct {
	state control.State
	at    time.Time
}

// records is one read of the cluster's records.
type records struct {
	leaders   []election.LeaderRecord
	members   []election.MemberRecord
	stepDowns map[string]election.StepDownRequest
	// control: the operator records (pauses, drains, restart requests),
	// in a read begun at controlAt.
	control   control.State
	controlAt time.Time
	// byQueue: the readable leader records, by queue.
	byQueue map[string]election.LeaderRecord
}

// read reads the cluster's records.
func (o *observer) read(ctx context.Context, b election.Backend) (records, error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var rs records
	var err error
	if rs.leaders, err = b.Leaders(rctx); err != nil {
		return rs, fmt.Errorf("read leaders: %w", err)
	}
	if rs.members, err = b.Members(rctx); err != nil {
		return rs, fmt.Errorf("read members: %w", err)
	}
	reqs, err := b.StepDownRequests(rctx)
	if err != nil {
		return rs, fmt.Errorf("read step-down requests: %w", err)
	}
	rs.controlAt = o.clock.Now()
	cs, err := b.Controls(rctx)
	if err != nil {
		return rs, fmt.Errorf("read operator records: %w", err)
	}
	rs.control = control.Parse(cs)
	rs.stepDowns = map[string]election.StepDownRequest{}
	for _, r := range reqs {
		rs.stepDowns[r.Queue] = r
	}
	rs.byQueue = map[string]election.LeaderRecord{}
	for _, r := range rs.leaders {
		if r.Err == nil {
			rs.byQueue[r.Queue] = r
		}
	}
	return rs, nil
}

// observeOnce reads the cluster's records, diagnoses this replica's
// queues (package diagnosis) and acts on the diagnosis: metrics, log
// reports, this follower's conflicts; it also relays step-down requests
// and feeds the balancer.
func (o *observer) observeOnce(ctx context.Context, b election.Backend) error {
	rs, err := o.read(ctx, b)
	if err != nil {
		return err
	}
	o.refreshRunners(controlRead{rs.control, rs.controlAt})
	order := make([]string, len(o.runners))
	for i, r := range o.runners {
		order[i] = r.queue.Name
	}
	snap := diagnosis.NewSnapshot(rs.leaders, rs.members)
	reports := map[string]*diagnosis.Report{}
	diag := diagnosis.Diagnose(snap, o.clock.Now(), order)
	for i := range diag {
		reports[diag[i].Queue] = &diag[i]
	}

	me := o.cfg.Identity.Node
	memberChanged := false
	for _, r := range o.runners {
		name, rep := r.queue.Name, reports[r.queue.Name]
		rec, led := rs.byQueue[name]
		st := o.noteLeader(r, rec, led)
		if o.cfg.Exclusive && led && rec.Node != me && st.role != election.RoleLeader {
			var cfg *config.Published
			if rep.Leader != nil {
				cfg = rep.Leader.Config
			}
			return &AlreadyLedError{Queue: name, Leader: rec, Config: cfg}
		}
		if o.reportConflicts(r, rep) {
			memberChanged = true
		}
		o.reportAnomalies(name, rep)
		o.relayControl(r, rs.control, rs.controlAt)
		if req, asked := rs.stepDowns[name]; asked {
			o.relayStepDown(r, st, req)
		}
	}
	o.noteDrain(rs.control)
	// The balancer runs with balancing off too: a drain is obeyed either
	// way.
	o.balance(rs, snap.Payloads())
	if memberChanged {
		o.members.wake()
	}
	return nil
}

// noteLeader sets, on a follower, the queue's term as regent_term. It
// returns the runner's status.
func (o *observer) noteLeader(r *queueRunner, rec election.LeaderRecord, led bool) queueStatus {
	st := r.current()
	if m := o.cfg.Metrics; m != nil && led && st.role != election.RoleLeader {
		m.Term.WithLabelValues(r.queue.Name).Set(float64(rec.Term))
	}
	return st
}

// reportConflicts keeps this replica's config conflicts with the queue's
// leader (the diagnosis' rule applied to its own config; none while it
// leads), sets regent_config_conflicts, and logs config_conflict (or
// config_conflict_resolved) once per change. It reports a change, for the
// member record.
func (o *observer) reportConflicts(r *queueRunner, rep *diagnosis.Report) bool {
	name := r.queue.Name
	conflicts := rep.Conflicts(o.cfg.Identity.Node, r.config().published)
	changed, n := r.noteConflicts(conflicts)
	if m := o.cfg.Metrics; m != nil {
		m.ConfigConflicts.WithLabelValues(name).Set(float64(n))
	}
	if !changed {
		return false
	}
	if len(conflicts) > 0 {
		o.log.Warn("config_conflict", "queue", name, "leader_node", rep.Leader.Node, "term", rep.Leader.Term,
			"conflicts", diagnosis.FormatConflicts(conflicts))
	} else {
		o.log.Info("config_conflict_resolved", "queue", name)
	}
	return true
}

// reportAnomalies sets the queue's anomaly metrics from its diagnosis
// (regent_split_brain, regent_stale_workers, regent_degraded) and logs
// split_brain, stale_worker and a corrupt leader record once per change.
func (o *observer) reportAnomalies(name string, rep *diagnosis.Report) {
	if m := o.cfg.Metrics; m != nil {
		m.SplitBrain.WithLabelValues(name).Set(gauge(len(rep.Claimants) > 0))
		m.StaleWorkers.WithLabelValues(name).Set(float64(len(rep.Stale)))
		m.Degraded.WithLabelValues(name).Set(gauge(rep.Degraded))
	}
	for _, p := range rep.Problems {
		if p.Code == diagnosis.CodeCorruptRecord {
			o.reportOnce("corrupt/"+name, p.Message, func() {
				o.log.Error("corrupt leader record", "queue", name, "error", p.Message)
			})
		}
	}
	for _, w := range rep.Stale {
		o.reportOnce("stale/"+name+"/"+w.Node, fmt.Sprint(w.Term, w.Current), func() {
			o.log.Error("stale_worker", "queue", name, "node", w.Node, "worker_term", w.Term, "current_term", w.Current)
		})
	}
	if len(rep.Claimants) == 0 {
		delete(o.reported, "split/"+name)
		return
	}
	desc := diagnosis.FormatClaims(rep.Claimants)
	o.reportOnce("split/"+name, desc, func() {
		o.log.Error("split_brain", "queue", name, "claimants", desc)
	})
}

// relayStepDown acts on a step-down request for the queue: the leader of
// the asked term steps down; a follower not named by --to holds back (the
// backends also hold back inside Campaign).
func (o *observer) relayStepDown(r *queueRunner, st queueStatus, req election.StepDownRequest) {
	me := o.cfg.Identity.Node
	if st.role == election.RoleLeader {
		if st.term == req.Term && req.To != me {
			r.requestStepDown()
		}
		return
	}
	if req.To == me {
		// Asked to take over: nothing of ours may hold it back, not
		// even the hold of our own recent step-down (a queue handed
		// back at once by a replica with another view of the counts
		// was left leaderless for that hold).
		r.holds.clear()
		return
	}
	if req.To == "" {
		return
	}
	now := o.clock.Now()
	if age := now.Sub(req.RequestedAt); age >= 0 && age < o.cfg.StepDownHold {
		r.holds.extend(now.Add(o.cfg.StepDownHold - age))
	}
}

func gauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// balance hands one observation to the balancer and carries out its
// decisions on the runners (see balance.go).
func (o *observer) balance(rs records, decoded map[string]diagnosis.MemberPayload) {
	leading := map[string]bool{}
	byName := make(map[string]*queueRunner, len(o.runners))
	for _, r := range o.runners {
		byName[r.queue.Name] = r
		if r.leads() {
			leading[r.queue.Name] = true
		}
	}
	drained := map[string]bool{}
	for n := range rs.control.Drains {
		drained[n] = true
	}
	d := o.balancer.decide(balanceInput{
		now: o.clock.Now(), leaders: rs.byQueue, members: rs.members, decoded: decoded, leading: leading,
		drained: drained,
	})
	for _, a := range d.actions {
		r := byName[a.queue]
		switch a.kind {
		case holdQueue:
			r.holds.holdBalance(o.clock.Now(), a.led, o.balancer.holdDelay(), o.balancer.balanceHoldMax())
		case clearHold:
			r.holds.clearBalance()
		case yieldQueue:
			r.requestYield(a.yield)
		case drainQueue:
			now := o.clock.Now()
			r.holds.holdDrain(now, now.Add(o.balancer.balanceHoldMax()))
		case undrainQueue:
			r.holds.clearDrain()
		}
	}
	if d.draining {
		o.log.Info("draining", "handing_over", d.batch)
	} else if d.batch > 0 {
		o.log.Info("rebalancing", "handing_over", d.batch, "share", d.share)
	}
}

// noteDrain follows the drain of this replica's node: regent_drained,
// the member record's drained flag, and the drained and undrained events,
// logged once per change.
func (o *observer) noteDrain(st control.State) {
	dr, drained := st.Drains[o.cfg.Identity.Node]
	if m := o.cfg.Metrics; m != nil {
		m.Drained.Set(gauge(drained))
	}
	if drained == o.drained {
		return
	}
	o.drained = drained
	o.members.setDrained(drained)
	if drained {
		o.log.Info("drained", "by", dr.By, "since", dr.Since, "reason", dr.Reason)
	} else {
		o.log.Info("undrained")
	}
}

func (o *observer) reportOnce(key, msg string, report func()) {
	if o.reported[key] == msg {
		return
	}
	o.reported[key] = msg
	report()
}
