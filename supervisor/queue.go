package supervisor

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/control"
	"github.com/regentd/regent/election"
)

// Reasons a leadership ends.
const (
	reasonStop     = "stop"
	reasonLost     = "lost"
	reasonDeadline = "deadline"
	reasonStepDown = "step_down"
	reasonPool     = "pool_failed"
)

// queueRunner is the per-queue runner: it campaigns for one queue, waits
// out its holds, and leads it whenever it wins (leaderRun). Its state is
// its own; the other parts reach it through narrow methods: status (what
// it is now, published as an immutable value), the hold-back mailbox
// (holds), and the step-down and yield requests (channels of size 1).
type queueRunner struct {
	cfg *Config // read only
	// queue is the config the runner was built with; only its Name is
	// read: the current config is settings (a reload replaces it).
	queue    config.QueueConfig
	settings atomic.Pointer[queueSettings]
	log      hclog.Logger
	clock    clock
	members  *memberPublisher
	// fenceOwner is REGENT_FENCE_OWNER of the workers (Supervisor.FenceOwner);
	// nil in tests that build a runner alone.
	fenceOwner func() string

	status atomic.Pointer[queueStatus]
	holds  *holds
	// stepDown wakes the lead loop when a step-down request may be pending.
	stepDown chan struct{}
	// yield asks the lead loop to hand the queue over (rebalancing).
	yield chan yieldReq
	// control is the queue's operator records from the newest read, the
	// observer's or the controlReader's (nil until the first); wake
	// tells the lead loop that control or settings changed (size 1,
	// non-blocking sends).
	control atomic.Pointer[queueControl]
	wake    chan struct{}
	// awaitingControl: the lead loop waits for a read of control begun
	// after its win (every read wakes it, changed or not); controls
	// makes such reads on request (nil in tests that build a runner
	// alone).
	awaitingControl atomic.Bool
	controls        *controlReader
	// campaigned: the settings whose payload the last Campaign published
	// (the queue's goroutine's own).
	campaigned *queueSettings
}

// queueSettings is the queue's effective config, as published: replaced
// whole by a reload, never changed.
type queueSettings struct {
	queue     config.QueueConfig
	published config.Published
	payload   []byte // the leader record's payload
}

// queueControl is what the operator records say of one queue.
type queueControl struct {
	pause   *control.Pause   // nil: not paused
	restart *control.Restart // the last restart request, nil: none
	// readAt is when the read that found them began (the runner's
	// clock): a leader trusts only a read begun after it won.
	readAt time.Time
}

// queueStatus is what a runner is at one moment. A value is never
// changed once published: the runner replaces it (a leadership's start,
// renewals and end), and the observer swaps in a follower's conflicts.
type queueStatus struct {
	role     string
	term     int64
	since    time.Time
	deadline time.Time
	pool     Pool
	// conflicts: this follower's config conflicts with the leader (none
	// while it leads).
	conflicts []config.Conflict
	// paused: this leader obeys a pause of the queue (it runs no worker).
	paused bool
	// restartID: the last restart request this leader carried out, or
	// found done at its term's start.
	restartID string
}

func newQueueRunner(cfg *Config, q config.QueueConfig, published config.Published, payload []byte, c clock, members *memberPublisher) *queueRunner {
	r := &queueRunner{
		cfg: cfg, queue: q,
		log: cfg.Logger.With("queue", q.Name), clock: c, members: members,
		holds: newHolds(), stepDown: make(chan struct{}, 1), yield: make(chan yieldReq, 1),
		wake: make(chan struct{}, 1),
	}
	r.settings.Store(&queueSettings{queue: q, published: published, payload: payload})
	r.status.Store(&queueStatus{role: election.RoleFollower})
	return r
}

// current settings of the queue (its effective config).
func (q *queueRunner) config() *queueSettings { return q.settings.Load() }

// setControl hands the runner what the operator records said of its
// queue in a read begun at readAt; a read older than the one held is
// ignored (the observer's and the controlReader's reads may cross). The
// lead loop is woken when the records changed, or while it waits for a
// fresh read. It never blocks.
func (q *queueRunner) setControl(st control.State, readAt time.Time) {
	c := &queueControl{readAt: readAt}
	if p, ok := st.Pauses[q.queue.Name]; ok {
		c.pause = &p
	}
	if r, ok := st.Restarts[q.queue.Name]; ok {
		c.restart = &r
	}
	for {
		old := q.control.Load()
		if old != nil && readAt.Before(old.readAt) {
			return
		}
		if !q.control.CompareAndSwap(old, c) {
			continue
		}
		if old == nil || q.awaitingControl.Load() || (old.pause == nil) != (c.pause == nil) || restartID(old) != restartID(c) {
			q.wakeLead()
		}
		return
	}
}

// restartID is the id of c's restart request, "" when none.
func restartID(c *queueControl) string {
	if c == nil || c.restart == nil {
		return ""
	}
	return c.restart.ID
}

// setConfig replaces the queue's settings (a reload) and wakes the lead
// loop to restart the workers with them.
func (q *queueRunner) setConfig(s *queueSettings) {
	q.settings.Store(s)
	q.wakeLead()
}

// wakeLead wakes the lead loop to look at control and settings again.
func (q *queueRunner) wakeLead() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// now reads the clock of the leader's deadlines (Config.Now).
func (q *queueRunner) now() time.Time { return q.cfg.Now() }

// current returns the runner's status now.
func (q *queueRunner) current() queueStatus { return *q.status.Load() }

// leads reports whether this replica leads the queue right now.
func (q *queueRunner) leads() bool { return q.current().role == election.RoleLeader }

// noteConflicts keeps this follower's config conflicts with the queue's
// leader (unchanged while it leads). It reports whether they changed and
// how many it keeps.
func (q *queueRunner) noteConflicts(conflicts []config.Conflict) (changed bool, n int) {
	_, cur := update(&q.status, func(s queueStatus) queueStatus {
		changed = s.role != election.RoleLeader && !slices.Equal(conflicts, s.conflicts)
		if changed {
			s.conflicts = conflicts
		}
		return s
	})
	return changed, len(cur.conflicts)
}

// requestStepDown wakes the lead loop to step down (a request for its
// term).
func (q *queueRunner) requestStepDown() {
	select {
	case q.stepDown <- struct{}{}:
	default:
	}
}

// requestYield asks the lead loop to hand the queue over gracefully.
func (q *queueRunner) requestYield(req yieldReq) {
	select {
	case q.yield <- req:
	default:
	}
}

// run campaigns for the queue and leads it whenever it wins, until ctx
// ends or the session is lost.
func (q *queueRunner) run(ctx context.Context, b election.Backend) error {
	for ctx.Err() == nil {
		if err := q.waitHoldBack(ctx); err != nil {
			return nil
		}
		l, err := q.campaign(ctx, b)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, errHoldBack) {
				continue
			}
			if errors.Is(err, election.ErrSessionLost) || errors.Is(err, election.ErrClosed) {
				return err
			}
			q.cfg.Metrics.backendError()
			q.log.Warn("campaign failed", "error", err)
			if sleepCtx(ctx, q.cfg.RetryInterval) != nil {
				return nil
			}
			continue
		}
		if reason := q.lead(ctx, b, l); reason == reasonStepDown {
			q.holds.steppedDown(q.clock.Now().Add(q.cfg.StepDownHold))
		}
	}
	return nil
}

var errHoldBack = errors.New("hold back")

// campaign runs one Campaign call, cancelled early when a hold-back starts
// (a step-down request naming another node).
func (q *queueRunner) campaign(ctx context.Context, b election.Backend) (election.Leadership, error) {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-q.holds.wake:
				if q.interruptingHold() > 0 {
					cancel()
					return
				}
			}
		}
	}()
	q.campaigned = q.config()
	l, err := b.Campaign(cctx, q.queue.Name, q.campaigned.payload)
	if err != nil && ctx.Err() == nil && cctx.Err() != nil {
		return nil, errHoldBack
	}
	if err == nil && cctx.Err() != nil && ctx.Err() == nil {
		// Won just as a hold-back began: keep it; resigning would only
		// leave the queue leaderless longer.
		return l, nil
	}
	return l, err
}

// holdLeft returns how long this replica still holds back its candidacy
// for the queue (0 or less: it does not).
func (q *queueRunner) holdLeft() time.Duration {
	return q.holds.left(q.clock.Now(), true)
}

// interruptingHold is like holdLeft, without a balance hold set while
// another replica leads the queue: a campaign under way holds what it
// has seen of that leader's last renewals, and a new one would have to
// wait out a whole lease again if the leader died (seen at a SIGKILL: 16 s
// instead of 10 for a replica just above its share). A campaign that
// wins above its share is evened out by a later handover.
func (q *queueRunner) interruptingHold() time.Duration {
	return q.holds.left(q.clock.Now(), false)
}

// waitHoldBack waits while this replica holds back its candidacy for the
// queue; a change of the hold (holds.wake) makes it look again.
func (q *queueRunner) waitHoldBack(ctx context.Context) error {
	for {
		wait := q.holdLeft()
		if wait <= 0 {
			return nil
		}
		fired, stop := q.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			stop()
			return ctx.Err()
		case <-q.holds.wake:
		case <-fired:
		}
		stop()
	}
}

// requestHandover writes a step-down request for the queue naming node
// to, so that the other replicas (this one included) hold back and to
// takes over. It reports whether the request was written; if not, the
// leader keeps the queue and balancing tries again later.
func (q *queueRunner) requestHandover(ctx context.Context, b election.Backend, to string, log interface {
	Warn(string, ...any)
}) bool {
	rctx, cancel := context.WithTimeout(ctx, min(5*time.Second, q.cfg.LeaseTTL/2))
	defer cancel()
	if err := b.RequestStepDown(rctx, q.queue.Name, to); err != nil {
		if ctx.Err() == nil {
			q.cfg.Metrics.backendError()
			log.Warn("handover request failed; keeping the queue", "to", to, "error", err)
		}
		return false
	}
	return true
}

func (q *queueRunner) resign(ctx context.Context, l election.Leadership, log interface {
	Debug(string, ...any)
}) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := l.Resign(rctx); err != nil && !errors.Is(err, election.ErrNotLeader) {
		log.Debug("resign failed", "error", err)
	}
}

func (q *queueRunner) setLeaseGauge(deadline time.Time) {
	if q.cfg.Metrics != nil {
		q.cfg.Metrics.LeaseRemaining.WithLabelValues(q.queue.Name).Set(max(0, deadline.Sub(q.now()).Seconds()))
	}
}
