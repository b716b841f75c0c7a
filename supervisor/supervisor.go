package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/election"
	"github.com/regentd/regent/internal/boottime"
	"github.com/regentd/regent/supervisor/diagnosis"
)

// Pool runs the workers of one queue for one leadership term.
type Pool interface {
	// Run spawns and supervises the workers until ctx is cancelled, then
	// stops them (SIGTERM, stop timeout, SIGKILL, never past the deadline)
	// and returns only when every worker process is dead.
	Run(ctx context.Context) error
	// SetDeadline moves the instant at which every worker is killed, by the
	// pool and by the guards on their own.
	SetDeadline(t time.Time)
	// Fence kills every worker now; Run returns once they are dead.
	Fence()
	// Workers describes the current workers.
	Workers() []diagnosis.WorkerInfo
}

// PoolSpec is what a PoolFactory needs to build a queue's pool.
type PoolSpec struct {
	Queue    config.QueueConfig
	Term     int64
	Deadline time.Time
	// Env is added to every worker's environment (REGENT_CLUSTER, ...).
	Env    []string
	Logger hclog.Logger
	// Events receives worker restarts by reason, for metrics; may be nil.
	Events func(reason string)
	// Changed is called (non-blocking) whenever the workers' state
	// changes, so the member record can be republished; may be nil.
	Changed func()
}

// PoolFactory builds a Pool.
type PoolFactory func(spec PoolSpec) Pool

// Config configures a Supervisor.
type Config struct {
	Identity election.Identity
	Version  string
	// Timing is the lease timing; the supervisor uses its LeaseTTL,
	// FenceMargin, RetryInterval and StepDownHold (how long a replica
	// asked to step down, or not named by a step-down's --to, holds back
	// its candidacy). New fills zero fields with their defaults and
	// refuses what election.Timing.Validate refuses.
	election.Timing
	Queues []config.QueueConfig
	// Balance spreads leadership evenly over the live replicas (see
	// balance.go). Off with --balance=false.
	Balance bool
	// Exclusive makes Run fail with an *AlreadyLedError when another
	// replica leads one of the queues, instead of standing by.
	Exclusive bool
	// Dial opens a new backend session.
	Dial    func(ctx context.Context) (election.Backend, error)
	NewPool PoolFactory
	Logger  hclog.Logger
	Metrics *Metrics
	// Now is the clock of the leader's deadlines: monotonic and counting
	// host suspend. Default boottime.Now; tests inject a suspend.
	Now func() time.Time
}

// AlreadyLedError is returned by Run with Exclusive when another replica
// already leads a queue.
type AlreadyLedError struct {
	Queue  string
	Leader election.LeaderRecord
	Config *config.Published
}

func (e *AlreadyLedError) Error() string {
	cfg := "unknown"
	if e.Config != nil {
		var parts []string
		for _, f := range e.Config.Fields() {
			switch f.Name {
			case "command", "concurrency", "max_rss_mb", "stop_timeout", "lease_ttl":
				parts = append(parts, f.Name+"="+f.Value)
			}
		}
		cfg = strings.Join(parts, " ")
	}
	return fmt.Sprintf("queue %s is already led by node %s on host %s (pid %d, term %d, config: %s); --exclusive does not stand by",
		e.Queue, e.Leader.Node, e.Leader.Host, e.Leader.PID, e.Leader.Term, cfg)
}

// Supervisor campaigns for its queues and carries out leader and follower
// duties. Create it with New and run it with Run.
type Supervisor struct {
	cfg Config
	log hclog.Logger

	mu      sync.Mutex
	queues  map[string]*queueState
	order   []string
	backend election.Backend
	healthy bool

	// fenceOwner is REGENT_FENCE_OWNER of this replica's workers,
	// "<cluster>/<deployment id>", read from the backend at each dial.
	fenceOwner atomic.Pointer[string]

	memberWake chan struct{}
	// bal is owned by the observer goroutine.
	bal balanceTracker
}

// queueState is this replica's state for one queue. Fields after mu are
// guarded by Supervisor.mu.
type queueState struct {
	cfg       config.QueueConfig
	published config.Published
	payload   []byte
	// stepDown wakes the lead loop when a step-down request may be pending.
	stepDown chan struct{}
	// holdBack wakes the campaign loop to re-check its hold-back.
	holdBack chan struct{}
	// yield asks the lead loop to hand the queue over (rebalancing).
	yield chan yieldReq

	role      string
	term      int64
	since     time.Time
	deadline  time.Time
	pool      Pool
	conflicts []config.Conflict
	// holdUntil: no candidacy before (after a step-down, or a step-down
	// request to another node).
	holdUntil time.Time
	// balanceHold: no candidacy before (balancing, see balance.go).
	balanceHold time.Time
	// balanceHoldLed: balanceHold was set while another replica led the
	// queue; it delays a new campaign but does not interrupt one under
	// way (see campaign).
	balanceHoldLed bool
}

// now reads the clock of the leader's deadlines (Config.Now).
func (s *Supervisor) now() time.Time { return s.cfg.Now() }

// New validates cfg and returns a Supervisor.
func New(cfg Config) (*Supervisor, error) {
	if cfg.Dial == nil || cfg.NewPool == nil {
		return nil, errors.New("supervisor: Dial and NewPool are required")
	}
	cfg.Timing = cfg.Timing.WithDefaults()
	if err := cfg.Timing.Validate(); err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	if len(cfg.Queues) == 0 {
		return nil, errors.New("supervisor: no queue")
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Now == nil {
		cfg.Now = boottime.Now
	}
	s := &Supervisor{
		cfg:        cfg,
		log:        cfg.Logger,
		queues:     map[string]*queueState{},
		memberWake: make(chan struct{}, 1),
	}
	for _, q := range cfg.Queues {
		pub := q.Publish(cfg.LeaseTTL)
		payload, err := json.Marshal(diagnosis.LeaderPayload{Version: cfg.Version, Config: pub})
		if err != nil {
			return nil, fmt.Errorf("supervisor: encode payload: %w", err)
		}
		s.queues[q.Name] = &queueState{
			cfg: q, published: pub, payload: payload,
			stepDown: make(chan struct{}, 1), holdBack: make(chan struct{}, 1), yield: make(chan yieldReq, 1),
			role: election.RoleFollower,
		}
		s.order = append(s.order, q.Name)
		cfg.Metrics.initQueue(q.Name)
	}
	return s, nil
}

// Run campaigns and supervises until ctx is cancelled, then stops every
// worker, resigns and closes the session, and returns nil. It returns an
// error if the backend cannot be reached at start, or an
// *AlreadyLedError with Exclusive. A session lost later is re-opened.
func (s *Supervisor) Run(ctx context.Context) error {
	b, err := s.dial(ctx)
	if err != nil {
		return err
	}
	for {
		err := s.runSession(ctx, b)
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if cerr := b.Close(closeCtx); cerr != nil {
			s.log.Debug("backend close failed", "error", cerr)
		}
		cancel()
		s.setBackend(nil)
		var led *AlreadyLedError
		if errors.As(err, &led) {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		s.log.Warn("session_lost", "error", err)
		b, err = s.redial(ctx)
		if err != nil {
			return nil // ctx cancelled
		}
		s.log.Info("session_restored")
	}
}

func (s *Supervisor) redial(ctx context.Context) (election.Backend, error) {
	delay := s.cfg.RetryInterval
	for {
		if err := sleepCtx(ctx, delay); err != nil {
			return nil, err
		}
		b, err := s.dial(ctx)
		if err == nil {
			return b, nil
		}
		s.cfg.Metrics.backendError()
		s.log.Warn("backend unreachable", "error", err)
		delay = min(delay*2, s.cfg.LeaseTTL)
	}
}

// dial opens a backend session and reads the cluster's deployment id
// through it, which names this deployment at the protected resource.
func (s *Supervisor) dial(ctx context.Context) (election.Backend, error) {
	b, err := s.cfg.Dial(ctx)
	if err != nil {
		return nil, err
	}
	id, err := b.DeploymentID(ctx)
	if err != nil {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = b.Close(closeCtx)
		return nil, fmt.Errorf("read the deployment id: %w", err)
	}
	owner := s.cfg.Identity.Cluster + "/" + id
	if old := s.fenceOwner.Swap(&owner); old == nil || *old != owner {
		s.log.Info("fence owner", "owner", owner)
	}
	return b, nil
}

// FenceOwner is REGENT_FENCE_OWNER of this replica's workers, or "" before
// the first session.
func (s *Supervisor) FenceOwner() string {
	if p := s.fenceOwner.Load(); p != nil {
		return *p
	}
	return ""
}

func (s *Supervisor) setBackend(b election.Backend) {
	s.mu.Lock()
	s.backend = b
	s.healthy = b != nil
	s.mu.Unlock()
}

// runSession runs every queue loop, the observer and the member publisher
// on one backend session until ctx ends, the session is lost, or a queue
// loop fails.
func (s *Supervisor) runSession(ctx context.Context, b election.Backend) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.setBackend(b)
	s.wakeMember()

	errc := make(chan error, len(s.order)+2)
	var wg sync.WaitGroup
	spawn := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				errc <- err
			}
		}()
	}
	spawn(func() error { return s.observe(ctx, b) })
	spawn(func() error { s.publishMembers(ctx, b); return nil })
	for _, name := range s.order {
		qs := s.queues[name]
		spawn(func() error { return s.runQueue(ctx, b, qs) })
	}

	var err error
	select {
	case <-ctx.Done():
	case <-b.Done():
		err = election.ErrSessionLost
	case err = <-errc:
	}
	cancel()
	wg.Wait()
	return err
}

// publishMembers writes this replica's member record whenever woken.
func (s *Supervisor) publishMembers(ctx context.Context, b election.Backend) {
	var last []byte
	// Worker RSS changes without events: republish it now and then (a
	// write only when the payload changed, at most every 5 s).
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.memberWake:
		case <-tick.C:
		}
		payload, role := s.memberPayload()
		if string(payload) == string(last) {
			continue
		}
		if err := b.SetMember(ctx, role, payload); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.cfg.Metrics.backendError()
			s.log.Warn("member record update failed", "error", err)
			// Try again after a pause.
			if sleepCtx(ctx, s.cfg.RetryInterval) != nil {
				return
			}
			s.wakeMember()
			continue
		}
		last = payload
		// No pacing sleep here: a 250 ms pause after each write made a
		// Postgres leader with a slow backend path miss its renewals
		// (TestMatrixLatency/under/postgres failed every time with it).
		// Followers watch only their queue's keys (etcd), so a write no
		// longer fans out to every standing-by campaign.
	}
}

func (s *Supervisor) wakeMember() {
	select {
	case s.memberWake <- struct{}{}:
	default:
	}
}

func (s *Supervisor) memberPayload() ([]byte, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	queues := make(map[string]diagnosis.MemberQueue, len(s.order))
	role := election.RoleFollower
	for _, name := range s.order {
		qs := s.queues[name]
		mq := diagnosis.MemberQueue{Role: qs.role, Config: qs.published, Conflicts: qs.conflicts}
		if qs.role == election.RoleLeader {
			role = election.RoleLeader
			mq.Term = qs.term
			mq.Since = qs.since
			mq.WorkerTerms = []int64{qs.term}
			if qs.pool != nil {
				mq.Workers = qs.pool.Workers()
				for _, w := range mq.Workers {
					if w.State == "degraded" {
						mq.Degraded = true
					}
				}
			}
		}
		queues[name] = mq
	}
	b, _ := json.Marshal(diagnosis.NewMemberPayload(s.cfg.Version, queues))
	return b, role
}

// Leads reports whether this replica leads queue right now, within its
// local deadline.
func (s *Supervisor) Leads(queue string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	qs, ok := s.queues[queue]
	return ok && qs.role == election.RoleLeader && s.now().Before(qs.deadline)
}

// Healthy reports whether the backend session is open.
func (s *Supervisor) Healthy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.healthy || s.backend == nil {
		return false
	}
	select {
	case <-s.backend.Done():
		return false
	default:
		return true
	}
}

// Backend returns the current backend session, or nil between sessions.
func (s *Supervisor) Backend() election.Backend {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.backend
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
