package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/regentd/regent/internal/boottime"
)

// Pool supervises the workers of one queue for one leadership term: it
// starts Concurrency workers, restarts them with backoff, runs the RSS
// watchdog and wedge detection, and stops them all when its context ends.
// Its methods are safe for concurrent use.
type Pool struct {
	// cfg is the config given to NewPool; live is the one new runs start
	// with (Reconfigure replaces it; Concurrency, Deadline, Dir, Clock,
	// Events and Logger never change).
	cfg  PoolConfig
	live atomic.Pointer[PoolConfig]
	log  hclog.Logger
	// restartC asks each slot to restart its worker (Restart); size 1.
	restartC []chan struct{}
	// stopping is closed once Run's context ends.
	stopping chan struct{}

	// dlMu orders deadline changes, fencing and process registration, so
	// that every guard ends with the latest deadline.
	dlMu     sync.Mutex
	deadline time.Time
	fenced   bool
	changed  chan struct{} // closed and replaced when deadline or fencing changes
	procs    map[int]*Process

	// mu guards the status.
	mu      sync.Mutex
	ran     bool
	slots   []slotStatus
	tempDir string
	// statusC is closed and replaced whenever a slot's status changes.
	statusC chan struct{}
}

// slotStatus is the status of one slot plus the history its windows need.
type slotStatus struct {
	WorkerStatus
	rssKills      []time.Time
	wedgeRestarts []time.Time
	// restartAcks counts the restart requests the slot took up;
	// ackStarts is Starts when it took up the last one.
	restartAcks, ackStarts int
}

// NewPool validates cfg and returns a pool; Run starts it.
func NewPool(cfg PoolConfig) (*Pool, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	p := &Pool{
		cfg:      cfg,
		log:      cfg.Logger,
		deadline: cfg.Deadline,
		changed:  make(chan struct{}),
		procs:    make(map[int]*Process),
		slots:    make([]slotStatus, cfg.Concurrency),
		restartC: make([]chan struct{}, cfg.Concurrency),
		stopping: make(chan struct{}),
		statusC:  make(chan struct{}),
	}
	for i := range p.slots {
		p.slots[i].Index = i
		p.slots[i].State = StateStopped
		p.restartC[i] = make(chan struct{}, 1)
	}
	live := cfg
	p.live.Store(&live)
	return p, nil
}

// conf is the config new runs start with.
func (p *Pool) conf() *PoolConfig { return p.live.Load() }

// Run supervises the workers until ctx ends, then stops them all in
// parallel (SIGTERM, Spec.StopTimeout, SIGKILL; never later than the
// deadline) and returns only once every worker's tree is dead. It returns
// nil after a clean stop, ErrPoolRunning if called twice, or an error if
// the pool's directory cannot be made.
func (p *Pool) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.ran {
		p.mu.Unlock()
		return ErrPoolRunning
	}
	p.ran = true
	p.mu.Unlock()

	dir := p.cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "regent-pool-*")
		if err != nil {
			return fmt.Errorf("worker: pool directory: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	p.mu.Lock()
	p.tempDir = dir
	p.mu.Unlock()
	stopWatch := context.AfterFunc(ctx, func() { close(p.stopping) })
	defer stopWatch()

	var wg sync.WaitGroup
	for i := 0; i < p.cfg.Concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := &slot{pool: p, index: i, log: p.log.With("worker", i)}
			s.run(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// ExtendDeadline moves the deadline of every worker, running or to come.
// An error means some guard could not be told; it will kill its worker at
// the old deadline.
func (p *Pool) ExtendDeadline(t time.Time) error {
	p.dlMu.Lock()
	defer p.dlMu.Unlock()
	p.deadline = t
	close(p.changed)
	p.changed = make(chan struct{})
	var errs []error
	for _, proc := range p.procs {
		if err := proc.ExtendDeadline(t); err != nil && !errors.Is(err, ErrExited) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Deadline returns the pool's current deadline.
func (p *Pool) Deadline() time.Time {
	p.dlMu.Lock()
	defer p.dlMu.Unlock()
	return p.deadline
}

// Fence kills every worker's tree at once (SIGKILL, no grace) and keeps
// the pool from starting any worker again; Run goes on until its context
// ends. Fence blocks until the trees are dead or ctx ends (then it returns
// ctx.Err(); the kills are already sent). Use it when leadership is known
// lost; a graceful stop is cancelling Run's context.
func (p *Pool) Fence(ctx context.Context) error {
	p.dlMu.Lock()
	p.fenced = true
	close(p.changed)
	p.changed = make(chan struct{})
	procs := make([]*Process, 0, len(p.procs))
	for _, proc := range p.procs {
		proc.Kill()
		procs = append(procs, proc)
	}
	p.dlMu.Unlock()
	for _, proc := range procs {
		select {
		case <-proc.Done():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Status returns the status of every worker slot.
func (p *Pool) Status() []WorkerStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.Clock.Now()
	out := make([]WorkerStatus, len(p.slots))
	for i := range p.slots {
		s := &p.slots[i]
		cfg := p.conf()
		s.RSSKills = countSince(s.rssKills, now.Add(-cfg.RSS.Window))
		s.RSSLoop = s.RSSKills > cfg.RSS.MaxKills
		s.WedgeRestarts = countSince(s.wedgeRestarts, now.Add(-cfg.Liveness.Window))
		out[i] = s.WorkerStatus
		if s.LastExit != nil {
			e := *s.LastExit
			out[i].LastExit = &e
		}
	}
	return out
}

// Degraded reports whether any worker is degraded (crash loop).
func (p *Pool) Degraded() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.slots {
		if p.slots[i].Degraded {
			return true
		}
	}
	return false
}

// update changes slot i's status under the lock.
func (p *Pool) update(i int, f func(s *slotStatus)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(&p.slots[i])
	close(p.statusC)
	p.statusC = make(chan struct{})
}

// emit logs e once and hands it to the Events hook.
func (p *Pool) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = p.cfg.Clock.Now()
	}
	p.logEvent(e)
	if p.cfg.Events != nil {
		p.cfg.Events(e)
	}
}

// isFenced reports whether Fence was called.
func (p *Pool) isFenced() bool {
	p.dlMu.Lock()
	defer p.dlMu.Unlock()
	return p.fenced
}

// startable returns the deadline to start a worker with, or ok false
// (and a channel that is closed on the next change) when none may start.
func (p *Pool) startable() (deadline time.Time, ok bool, changed <-chan struct{}) {
	p.dlMu.Lock()
	defer p.dlMu.Unlock()
	if p.fenced || !boottime.Now().Before(p.deadline) {
		return time.Time{}, false, p.changed
	}
	return p.deadline, true, p.changed
}

// register records a started process and brings it up to date with
// deadline changes and fencing that happened while it started.
func (p *Pool) register(i int, proc *Process) {
	p.dlMu.Lock()
	defer p.dlMu.Unlock()
	p.procs[i] = proc
	switch {
	case p.fenced:
		proc.Kill()
	case !p.deadline.Equal(proc.Deadline()):
		_ = proc.ExtendDeadline(p.deadline)
	}
}

// unregister forgets a process whose tree is dead.
func (p *Pool) unregister(i int, proc *Process) {
	p.dlMu.Lock()
	defer p.dlMu.Unlock()
	if p.procs[i] == proc {
		delete(p.procs, i)
	}
}

// dir returns the pool's directory (set by Run).
func (p *Pool) dir() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tempDir
}

// heartbeatPath is worker i's heartbeat file.
func (p *Pool) heartbeatPath(i int) string {
	return heartbeatFile(p.dir(), i)
}

// heartbeatFile is worker i's heartbeat file in the pool's directory.
func heartbeatFile(dir string, i int) string {
	return filepath.Join(dir, fmt.Sprintf("worker-%d.heartbeat", i))
}

// countSince counts the times at or after since.
func countSince(ts []time.Time, since time.Time) int {
	n := 0
	for _, t := range ts {
		if !t.Before(since) {
			n++
		}
	}
	return n
}

// pruneBefore drops the times before since.
func pruneBefore(ts []time.Time, since time.Time) []time.Time {
	out := ts[:0]
	for _, t := range ts {
		if !t.Before(since) {
			out = append(out, t)
		}
	}
	return out
}
