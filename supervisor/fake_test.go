package supervisor

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/supervisor/diagnosis"
)

// fakeBackend is an in-memory election backend for unit tests of the
// supervisor's algorithm only; the real backends are proven against real
// servers by the contract suite and the integration tests.
type fakeBackend struct {
	mu        sync.Mutex
	leaders   map[string]election.LeaderRecord
	members   map[string]election.MemberRecord
	grant     chan *fakeLeadership // Campaign returns what is sent here
	changes   chan struct{}
	done      chan struct{}
	stepDowns map[string]election.StepDownRequest
	events    []string
	controls  []election.Control // the operator records Controls returns
	muted     bool               // wake tells nobody (a notification not yet delivered)
	// controlReads counts the calls of Controls; controlsGate, when set,
	// holds each call until a value is sent.
	controlReads int
	controlsGate chan struct{}
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{
		leaders: map[string]election.LeaderRecord{}, members: map[string]election.MemberRecord{},
		grant: make(chan *fakeLeadership), changes: make(chan struct{}, 1), done: make(chan struct{}),
		stepDowns: map[string]election.StepDownRequest{},
	}
}

func (f *fakeBackend) record(ev string) {
	f.mu.Lock()
	f.events = append(f.events, ev)
	f.mu.Unlock()
}

func (f *fakeBackend) Events() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.events...)
}

func (f *fakeBackend) Campaign(ctx context.Context, queue string, payload []byte) (election.Leadership, error) {
	select {
	case l := <-f.grant:
		l.backend = f
		return l, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-f.done:
		return nil, election.ErrClosed
	}
}

func (f *fakeBackend) Leader(ctx context.Context, queue string) (election.LeaderRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.leaders[queue]
	if !ok {
		return r, election.ErrNoLeader
	}
	return r, nil
}

func (f *fakeBackend) Leaders(ctx context.Context) ([]election.LeaderRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []election.LeaderRecord
	for _, r := range f.leaders {
		out = append(out, r)
	}
	return out, nil
}

func (f *fakeBackend) SetMember(ctx context.Context, role string, payload []byte) error {
	f.mu.Lock()
	f.members["self"] = election.MemberRecord{Node: "self", Role: role, Payload: payload}
	f.mu.Unlock()
	return nil
}

func (f *fakeBackend) Members(ctx context.Context) ([]election.MemberRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []election.MemberRecord
	for _, m := range f.members {
		out = append(out, m)
	}
	return out, nil
}

// Changes follows the contract: the channel is closed when ctx ends or
// the backend closes. Its forwarding goroutine ends with it.
func (f *fakeBackend) Changes(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case <-f.done:
				return
			case <-f.changes:
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out
}

func (f *fakeBackend) RequestStepDown(ctx context.Context, queue, to string) error {
	f.record("step_down " + queue + " to " + to)
	return nil
}

func (f *fakeBackend) StepDownRequest(ctx context.Context, queue string) (election.StepDownRequest, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.stepDowns[queue]
	return r, ok, nil
}

func (f *fakeBackend) ReleaseTerm(ctx context.Context, queue string, term int64) error { return nil }

func (f *fakeBackend) PutControl(ctx context.Context, kind, name string, value []byte) error {
	f.mu.Lock()
	f.controls = slices.DeleteFunc(f.controls, func(c election.Control) bool { return c.Kind == kind && c.Name == name })
	f.controls = append(f.controls, election.Control{Kind: kind, Name: name, Value: value})
	f.mu.Unlock()
	f.wake()
	return nil
}

func (f *fakeBackend) DeleteControl(ctx context.Context, kind, name string) error {
	f.mu.Lock()
	f.controls = slices.DeleteFunc(f.controls, func(c election.Control) bool { return c.Kind == kind && c.Name == name })
	f.mu.Unlock()
	f.wake()
	return nil
}

func (f *fakeBackend) Controls(ctx context.Context) ([]election.Control, error) {
	f.mu.Lock()
	f.controlReads++
	gate := f.controlsGate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]election.Control(nil), f.controls...), nil
}

func (f *fakeBackend) reads() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.controlReads
}

func (f *fakeBackend) RecordAction(ctx context.Context, a election.Action) error { return nil }

func (f *fakeBackend) Actions(ctx context.Context, limit int) ([]election.Action, error) {
	return nil, nil
}

func (f *fakeBackend) DeploymentID(ctx context.Context) (string, error) {
	return "0123456789abcdef", nil
}
func (f *fakeBackend) Done() <-chan struct{} { return f.done }

func (f *fakeBackend) Close(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.done:
	default:
		close(f.done)
	}
	return nil
}

func (f *fakeBackend) wake() {
	f.mu.Lock()
	muted := f.muted
	f.mu.Unlock()
	if muted {
		return
	}
	select {
	case f.changes <- struct{}{}:
	default:
	}
}

// fakeLeadership is a leadership whose validity the test drives.
type fakeLeadership struct {
	backend *fakeBackend
	queue   string
	term    int64
	mu      sync.Mutex
	valid   time.Time
	renewed chan struct{}
	done    chan struct{}
	once    sync.Once
}

func newFakeLeadership(queue string, term int64, valid time.Time) *fakeLeadership {
	return &fakeLeadership{queue: queue, term: term, valid: valid, renewed: make(chan struct{}, 1), done: make(chan struct{})}
}

func (l *fakeLeadership) Queue() string { return l.queue }
func (l *fakeLeadership) Term() int64   { return l.term }
func (l *fakeLeadership) ValidUntil() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.valid
}
func (l *fakeLeadership) Renewed() <-chan struct{} { return l.renewed }
func (l *fakeLeadership) Done() <-chan struct{}    { return l.done }
func (l *fakeLeadership) Publish(ctx context.Context, payload []byte) error {
	return nil
}
func (l *fakeLeadership) Resign(ctx context.Context) error {
	l.backend.record("resign")
	l.lose()
	return nil
}
func (l *fakeLeadership) renew(valid time.Time) {
	l.mu.Lock()
	l.valid = valid
	l.mu.Unlock()
	select {
	case l.renewed <- struct{}{}:
	default:
	}
}
func (l *fakeLeadership) lose() { l.once.Do(func() { close(l.done) }) }

// fakePool records what the supervisor asks of a pool.
type fakePool struct {
	backend  *fakeBackend
	mu       sync.Mutex
	deadline time.Time
	fenced   chan struct{}
	fOnce    sync.Once
	stopped  time.Time
	fencedAt time.Time
	// concurrency is the queue's at the pool's build.
	concurrency int
}

func (p *fakePool) Run(ctx context.Context) error {
	p.backend.record("pool_start")
	select {
	case <-ctx.Done():
		p.backend.record("pool_stop")
	case <-p.fenced:
		p.backend.record("pool_fenced")
	}
	p.mu.Lock()
	p.stopped = time.Now()
	p.mu.Unlock()
	return nil
}

func (p *fakePool) SetDeadline(t time.Time) {
	p.mu.Lock()
	p.deadline = t
	p.mu.Unlock()
}

func (p *fakePool) Fence() {
	p.fOnce.Do(func() {
		p.mu.Lock()
		p.fencedAt = time.Now()
		p.mu.Unlock()
		close(p.fenced)
	})
}

func (p *fakePool) Workers() []diagnosis.WorkerInfo { return nil }

// Restart records the restart and its mode.
func (p *fakePool) Restart(ctx context.Context, rolling bool) error {
	if rolling {
		p.backend.record("pool_restart rolling")
	} else {
		p.backend.record("pool_restart")
	}
	return nil
}

// Reconfigure takes a spec of the same concurrency.
func (p *fakePool) Reconfigure(spec PoolSpec) bool {
	p.backend.record("pool_reconfigure")
	return spec.Queue.Concurrency == p.concurrency
}

func (f *fakeBackend) History(ctx context.Context, queue string, limit int) ([]election.HistoryEntry, error) {
	return nil, nil
}

func (f *fakeBackend) StepDownRequests(ctx context.Context) ([]election.StepDownRequest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []election.StepDownRequest
	for _, r := range f.stepDowns {
		out = append(out, r)
	}
	return out, nil
}

// mute holds back (on) or lets through the change notifications, as a
// watch whose event is late.
func (f *fakeBackend) mute(on bool) {
	f.mu.Lock()
	f.muted = on
	f.mu.Unlock()
}
