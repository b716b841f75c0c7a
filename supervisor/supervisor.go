package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
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
	// Restart replaces the running workers in place, one at a time with
	// rolling (waiting for each new one to run, and to heartbeat with
	// wedge detection on), else all at once; see worker.Pool.Restart. It
	// returns once done, or an error when ctx ends or the pool stops
	// first. Call it while Run runs.
	Restart(ctx context.Context, rolling bool) error
	// Reconfigure makes the workers started from now on run with
	// spec.Queue (a reload); Restart then replaces the running ones. It
	// reports false when the pool cannot (another concurrency): the
	// caller replaces the pool.
	Reconfigure(spec PoolSpec) bool
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
	// HTTPAddr is the address this replica's HTTP server actually listens
	// on, published in its member record (empty: none).
	HTTPAddr string
	// Dial opens a new backend session.
	Dial    func(ctx context.Context) (election.Backend, error)
	NewPool PoolFactory
	Logger  hclog.Logger
	Metrics *Metrics
	// Now is the clock of the leader's deadlines: monotonic and counting
	// host suspend. Default boottime.Now; tests inject a suspend.
	Now func() time.Time

	// clock is the wall clock of the balancer, the hold-backs and the
	// observer (see clock); tests inject one they advance.
	clock clock
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
// duties. Create it with New and run it with Run. It is the assembly of
// the parts (see the package doc): it builds them, starts their
// goroutines on each backend session and waits for them; its own state is
// only the current session.
type Supervisor struct {
	cfg Config
	log hclog.Logger

	// set is the current runners, replaced whole by a reload that adds or
	// removes queues; setChanged tells runSession (size 1).
	set        atomic.Pointer[runnerSet]
	setChanged chan struct{}
	// reloading serializes Reload calls.
	reloading sync.Mutex
	members   *memberPublisher
	obs       *observer
	controls  *controlReader

	// mu guards backend, read by the HTTP handlers.
	mu      sync.Mutex
	backend election.Backend

	// fenceOwner is REGENT_FENCE_OWNER of this replica's workers,
	// "<cluster>/<deployment id>", read from the backend at each dial.
	fenceOwner atomic.Pointer[string]
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
	if cfg.clock == nil {
		cfg.clock = wallClock{}
	}
	s := &Supervisor{cfg: cfg, log: cfg.Logger, setChanged: make(chan struct{}, 1)}
	s.members = newMemberPublisher(&s.cfg)
	s.controls = newControlReader(&s.cfg, cfg.clock, func() []*queueRunner { return s.runners().list })
	set := &runnerSet{byName: map[string]*queueRunner{}}
	for _, q := range s.cfg.Queues {
		st, err := s.settings(q)
		if err != nil {
			return nil, err
		}
		set.add(s.newRunner(st))
	}
	s.set.Store(set)
	s.members.runners = set.list
	s.members.set = func() []*queueRunner { return s.runners().list }
	s.obs = newObserver(&s.cfg, cfg.clock, set.list, s.members)
	s.obs.set = func() []*queueRunner { return s.runners().list }
	return s, nil
}

// runnerSet is the runners of the configured queues, in order: never
// changed once stored (a reload stores a new one).
type runnerSet struct {
	list   []*queueRunner
	byName map[string]*queueRunner
}

func (rs *runnerSet) add(r *queueRunner) {
	rs.list = append(rs.list, r)
	rs.byName[r.queue.Name] = r
}

// Queues returns the configs of the queues this replica campaigns for
// now (after any reload), in order.
func (s *Supervisor) Queues() []config.QueueConfig {
	rs := s.runners()
	out := make([]config.QueueConfig, 0, len(rs.list))
	for _, r := range rs.list {
		out = append(out, r.config().queue)
	}
	return out
}

// runners returns the current runners.
func (s *Supervisor) runners() *runnerSet { return s.set.Load() }

// settings are the published settings of queue q.
func (s *Supervisor) settings(q config.QueueConfig) (*queueSettings, error) {
	pub := q.Publish(s.cfg.LeaseTTL)
	payload, err := json.Marshal(diagnosis.LeaderPayload{Version: s.cfg.Version, Config: pub})
	if err != nil {
		return nil, fmt.Errorf("supervisor: encode payload: %w", err)
	}
	return &queueSettings{queue: q, published: pub, payload: payload}, nil
}

// newRunner builds the runner of a queue.
func (s *Supervisor) newRunner(st *queueSettings) *queueRunner {
	r := newQueueRunner(&s.cfg, st.queue, st.published, st.payload, s.cfg.clock, s.members)
	r.fenceOwner = s.FenceOwner
	r.controls = s.controls
	s.cfg.Metrics.initQueue(st.queue.Name)
	s.cfg.Metrics.SetConfigGeneration(st.queue.Name, st.published.Generation())
	return r
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
	s.mu.Unlock()
}

// runSession runs every queue loop, the observer and the member publisher
// on one backend session until ctx ends, the session is lost, or a queue
// loop fails.
func (s *Supervisor) runSession(ctx context.Context, b election.Backend) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.setBackend(b)
	s.members.wake()

	errc := make(chan error, 1) // the first error ends the session
	var wg sync.WaitGroup
	spawn := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				select {
				case errc <- err:
				default:
				}
			}
		}()
	}
	// The runners campaign once the observer has looked at the records
	// once (or failed to): a drained node restarted must not win a free
	// queue before it has read its drain.
	observed := make(chan struct{})
	spawn(func() error { return s.obs.run(ctx, b, observed) })
	spawn(func() error { s.members.run(ctx, b); return nil })
	spawn(func() error { s.controls.run(ctx, b); return nil })
	// Each runner runs under its own context: a reload that removes its
	// queue cancels it, and it stops its workers and resigns.
	running := map[*queueRunner]context.CancelFunc{}
	follow := func() {
		set := s.runners()
		for _, r := range set.list {
			if _, ok := running[r]; !ok {
				rctx, stop := context.WithCancel(ctx)
				running[r] = stop
				spawn(func() error { return r.run(rctx, b) })
			}
		}
		for r, stop := range running {
			if set.byName[r.queue.Name] != r {
				stop()
				delete(running, r)
			}
		}
	}
	select {
	case <-observed:
	case <-ctx.Done():
	}
	follow()

	var err error
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-b.Done():
			err, done = election.ErrSessionLost, true
		case err = <-errc:
			done = true
		case <-s.setChanged:
			follow()
		}
	}
	cancel()
	wg.Wait()
	return err
}

// Leads reports whether this replica leads queue right now, within its
// local deadline.
func (s *Supervisor) Leads(queue string) bool {
	r, ok := s.runners().byName[queue]
	if !ok {
		return false
	}
	st := r.current()
	return st.role == election.RoleLeader && s.now().Before(st.deadline)
}

// Healthy reports whether the backend session is open and, on a backend
// that can tell (election.SessionConfirmer: etcd), confirmed by the server
// within the last two renew intervals (Timing.ConfirmWindow), so that a
// replica cut off from etcd stops reporting healthy within two renew
// intervals of the cut instead of when it hears etcd again.
func (s *Supervisor) Healthy() bool {
	s.mu.Lock()
	b := s.backend
	s.mu.Unlock()
	if b == nil {
		return false
	}
	select {
	case <-b.Done():
		return false
	default:
	}
	if c, ok := b.(election.SessionConfirmer); ok {
		return c.SessionConfirmed()
	}
	return true
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

// Reload hands the supervisor the queues of a reloaded config. For each
// queue whose config changed, its leader reconfigures its pool and
// restarts its workers in place (rolling; a new concurrency replaces the
// pool) and republishes its leader payload; a follower republishes its
// member record, so that conflicts clear as a rollout proceeds. Queues
// added are campaigned for at once; queues removed are released
// gracefully: their runner's context ends, and a leader stops its workers
// and resigns (the member record stops listing the queue at once). It
// logs config_reloaded with the queues changed, added and removed, and
// never blocks on the runners. queues must not be empty.
func (s *Supervisor) Reload(ctx context.Context, queues []config.QueueConfig) error {
	if len(queues) == 0 {
		return errors.New("supervisor: reload without a queue")
	}
	s.reloading.Lock()
	defer s.reloading.Unlock()
	cur := s.runners()
	next := &runnerSet{byName: map[string]*queueRunner{}}
	type change struct {
		r  *queueRunner
		st *queueSettings
	}
	var changes []change
	changed, added, removed := []string{}, []string{}, []string{}
	for _, q := range queues {
		r, ok := cur.byName[q.Name]
		if ok && reflect.DeepEqual(q, r.config().queue) {
			next.add(r)
			continue
		}
		st, err := s.settings(q)
		if err != nil {
			return err
		}
		if ok {
			next.add(r)
			changes = append(changes, change{r, st})
			changed = append(changed, q.Name)
			continue
		}
		r = s.newRunner(st)
		if last := s.obs.lastControl.Load(); last != nil {
			r.setControl(last.state, last.at) // the next observation brings it up to date
		}
		next.add(r)
		added = append(added, q.Name)
	}
	for _, r := range cur.list {
		if _, ok := next.byName[r.queue.Name]; !ok {
			removed = append(removed, r.queue.Name)
		}
	}
	for _, c := range changes {
		c.r.setConfig(c.st)
		s.cfg.Metrics.SetConfigGeneration(c.r.queue.Name, c.st.published.Generation())
	}
	s.set.Store(next)
	select {
	case s.setChanged <- struct{}{}:
	default:
	}
	s.members.wake()
	s.log.Info("config_reloaded", "changed", changed, "added", added, "removed", removed)
	return nil
}
