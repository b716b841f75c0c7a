package etcdbackend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/regentd/regent/election"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regentd/regent/internal/boottime"
)

var _ election.Backend = (*Backend)(nil)

// Backend is one replica's connection to etcd: one lease (the session),
// shared by the member record and every leadership. It implements
// election.Backend; see doc.go for the key layout and the trust window.
type Backend struct {
	cfg       Config
	opts      election.Options
	log       hclog.Logger
	cli       *clientv3.Client
	keys      keyspace
	endpoints string // for error messages: never holds credentials

	// lease is the session lease, 0 when read-only. ttl is the trust
	// window of one renewal: the smaller of the TTL asked for and the TTL
	// granted.
	lease clientv3.LeaseID
	ttl   time.Duration

	ctx    context.Context    // cancelled by Close
	cancel context.CancelFunc //
	live   context.Context    // cancelled by Close and on session loss
	kill   context.CancelFunc // cancels live
	lost   chan struct{}      // closed on session loss
	done   chan struct{}      // closed on session loss or Close
	lostMu sync.Once          // guards closing lost
	doneMu sync.Once          // guards closing done

	wg  sync.WaitGroup // background goroutines: session, watchers, Changes
	ops sync.WaitGroup // calls of the Backend's users in flight

	// campaignSlots bounds the campaign requests in flight (see
	// campaignConcurrency).
	campaignSlots chan struct{}

	// renewals of other replicas' leases as last read (see
	// leaseRenewalBound).
	renewalBounds leaseBounds
	// heartbeat reads of campaigns whose leader key was deleted (see
	// heartbeatAt).
	beatReads beatReads

	// sdMu guards the step-down lease shared by requests made within
	// stepDownLeaseShare of its grant (see stepDownLease).
	sdMu      sync.Mutex
	sdLease   clientv3.LeaseID
	sdGranted time.Time

	// beatWatch, nil outside tests, wraps the heartbeat watch of a waiting
	// campaign (see campaign.wait): tests hold its events back to show
	// that a campaign's hold-back does not depend on when they arrive.
	beatWatch func(context.Context, clientv3.WatchChan) clientv3.WatchChan

	// leading counts leaderships held plus creation attempts in flight;
	// while it is positive each renewal also rewrites the heartbeat key.
	leading atomic.Int64

	mu         sync.Mutex
	closed     bool
	validUntil time.Time     // monotonic: last renewal send time + ttl
	renewedCh  chan struct{} // closed and replaced when validUntil moves
	renewals   uint64        // successful renewals
	renewedAt  time.Time     // monotonic: send time of the last successful renewal (or grant)
	queues     map[string]*queueState
	pending    map[string]int64 // queue -> own term to release (0: unknown)
	memberSet  bool             // a member record was written
	closeDone  chan struct{}    // closed when Close has finished
	closeErr   error
}

// queueState is what the backend knows of one queue it campaigns for.
type queueState struct {
	campaigning bool
	active      *leadership
	// heldTerm is the last term this backend held for the queue, and
	// heldUntil its ValidUntil when it was lost (zero while held).
	heldTerm  int64
	heldUntil time.Time
	// expiredTerm is the last term given up because ValidUntil passed
	// without a renewal: its pending release records an expiry.
	expiredTerm int64
}

// New connects to etcd, checks within cfg.DialTimeout that it answers and,
// unless opts.ReadOnly, grants the session lease and starts renewing it.
// ctx bounds New only; cancelling it makes New fail. Errors reaching etcd
// wrap election.ErrUnavailable.
func New(ctx context.Context, cfg Config, opts election.Options, log hclog.Logger) (*Backend, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	cfg = cfg.withDefaults()
	opts, err := checkOptions(opts)
	if err != nil {
		return nil, err
	}
	ccfg, err := cfg.clientConfig()
	if err != nil {
		return nil, err
	}
	b := &Backend{
		cfg:       cfg,
		opts:      opts,
		log:       log,
		keys:      keyspace{cluster: opts.Cluster},
		endpoints: strings.Join(ccfg.Endpoints, ","),
		lost:      make(chan struct{}),
		done:      make(chan struct{}),
		renewedCh: make(chan struct{}),
		queues:    make(map[string]*queueState),
		pending:   make(map[string]int64),
		closeDone: make(chan struct{}),

		campaignSlots: make(chan struct{}, campaignConcurrency),
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.live, b.kill = context.WithCancel(b.ctx)

	cctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	b.cli, err = clientv3.New(ccfg)
	if err != nil {
		b.cancel()
		return nil, connectErr(ctx, ccfg, b.translate(cctx, "connect", err))
	}
	if err := b.start(cctx); err != nil {
		b.cancel()
		_ = b.cli.Close()
		return nil, connectErr(ctx, ccfg, err)
	}
	return b, nil
}

// connectErr returns err, New's failure, or, when etcd was unreachable
// over TLS because of the TLS handshake, the handshake's problem.
func connectErr(ctx context.Context, ccfg clientv3.Config, err error) error {
	if ccfg.TLS == nil || !errors.Is(err, election.ErrUnavailable) {
		return err
	}
	if terr := diagnoseTLS(context.WithoutCancel(ctx), ccfg.Endpoints, ccfg.TLS); terr != nil {
		return fmt.Errorf("%w: %w", election.ErrUnavailable, terr)
	}
	return err
}

// start checks that etcd answers and grants the lease.
func (b *Backend) start(ctx context.Context) error {
	// The client dials lazily: a linearizable read proves that a member
	// with a quorum answers.
	if _, err := b.cli.Get(ctx, b.keys.root(), clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		return b.translate(ctx, "connect", err)
	}
	if b.opts.ReadOnly {
		b.log.Debug("connected to etcd", "endpoints", b.endpoints, "read_only", true)
		return nil
	}
	sent := boottime.Now() // validUntil counts host suspend (internal/boottime)
	resp, err := b.cli.Grant(ctx, int64(b.opts.LeaseTTL/time.Second))
	if err != nil {
		return b.translate(ctx, "grant lease", err)
	}
	b.lease = resp.ID
	b.ttl = min(b.opts.LeaseTTL, time.Duration(resp.TTL)*time.Second)
	if b.ttl != b.opts.LeaseTTL {
		b.log.Warn("etcd granted a different lease ttl", "lease_ttl", b.opts.LeaseTTL, "granted_ttl", time.Duration(resp.TTL)*time.Second)
	}
	b.validUntil = sent.Add(b.ttl)
	b.renewedAt = sent
	b.wg.Add(1)
	go b.runSession()
	b.log.Debug("connected to etcd", "endpoints", b.endpoints, "lease", fmt.Sprintf("%x", int64(b.lease)), "lease_ttl", b.ttl)
	return nil
}

// LeaseID returns the session lease, or 0 for a read-only backend.
func (b *Backend) LeaseID() int64 { return int64(b.lease) }

// Done is closed when the session is lost (the lease expired or was
// revoked) or the backend is closed. A read-only backend has no session:
// its Done is closed only by Close.
func (b *Backend) Done() <-chan struct{} { return b.done }

// op registers a call of a user of the Backend. It returns a context that
// is cancelled when ctx is, when the backend closes and, if needSession,
// when the session is lost; end must be called when the call returns.
// After Close it fails with election.ErrClosed; once the session of a
// read-write backend is lost, with election.ErrSessionLost, whatever the
// call: the backend is spent (see the election package's contract).
func (b *Backend) op(ctx context.Context, needSession bool) (context.Context, func(), error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, nil, election.ErrClosed
	}
	if b.lease != 0 && b.sessionLost() {
		b.mu.Unlock()
		return nil, nil, fmt.Errorf("%w: the backend's lease is gone", election.ErrSessionLost)
	}
	b.ops.Add(1)
	b.mu.Unlock()
	parent := b.ctx
	if needSession {
		parent = b.live
	}
	octx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(parent, cancel)
	return octx, func() {
		stop()
		cancel()
		b.ops.Done()
	}, nil
}

// request bounds one request of a user call: by ctx when it has a
// deadline, else by DialTimeout.
func (b *Backend) request(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, b.cfg.DialTimeout)
}

// sessionLost reports whether the session has been lost.
func (b *Backend) sessionLost() bool {
	select {
	case <-b.lost:
		return true
	default:
		return false
	}
}

// loseSession records that the lease is gone: every leadership and the
// backend's Done close.
func (b *Backend) loseSession(reason string) {
	first := false
	b.lostMu.Do(func() {
		first = true
		close(b.lost)
	})
	if !first {
		return
	}
	b.kill()
	b.log.Error("etcd session lost", "lease", fmt.Sprintf("%x", int64(b.lease)), "reason", reason)
	dropped := b.dropAll()
	for _, l := range dropped {
		l.markLost("session lost: " + reason)
	}
	b.doneMu.Do(func() { close(b.done) })
	for _, l := range dropped {
		b.noteLost(l)
	}
}

// dropAll removes every active leadership from the backend's state and
// returns them, so that the caller marks them lost.
func (b *Backend) dropAll() []*leadership {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*leadership
	for _, qs := range b.queues {
		if qs.active != nil {
			out = append(out, qs.active)
			qs.active = nil
		}
	}
	return out
}

// Close resigns every leadership held, deletes the member record, revokes
// the lease and closes the client. It first closes the Done channel of
// every leadership, then cancels every call in flight (they return
// election.ErrClosed) and waits for them. The resigns are clean releases
// (followers take over at once), so call Close once the work of every
// leadership has stopped. ctx bounds the cleanup requests;
// without a deadline they get DialTimeout. Close is idempotent: later
// calls wait for the first to finish and return nil.
func (b *Backend) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		<-b.closeDone
		return nil
	}
	b.closed = true
	b.mu.Unlock()

	held := b.dropAll()
	for _, l := range held {
		l.markLost(reasonClosed)
	}
	b.cancel()
	b.ops.Wait()
	b.wg.Wait()

	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.cfg.DialTimeout)
		defer cancel()
	}
	var errs []error
	if b.lease != 0 && !b.sessionLost() {
		errs = append(errs, b.closeSession(ctx, held)...)
	}
	if err := b.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		errs = append(errs, fmt.Errorf("etcd: close client: %w", err))
	}
	b.doneMu.Do(func() { close(b.done) })
	b.closeErr = errors.Join(errs...)
	close(b.closeDone)
	b.log.Debug("etcd backend closed")
	return b.closeErr
}

// closeSession releases the leaderships held and the pending ones, deletes
// the member record and revokes the lease.
func (b *Backend) closeSession(ctx context.Context, held []*leadership) []error {
	var errs []error
	b.mu.Lock()
	pending := make(map[string]int64, len(b.pending)+len(held))
	for q, t := range b.pending {
		pending[q] = t
	}
	memberSet := b.memberSet
	b.mu.Unlock()
	for _, l := range held {
		pending[l.queue] = l.term
	}
	for q, t := range pending {
		if err := b.releasePending(ctx, q, t); err != nil {
			errs = append(errs, b.translate(ctx, "resign "+q, err))
		}
	}
	if memberSet {
		if _, err := b.cli.Delete(ctx, b.keys.member(b.opts.Node)); err != nil {
			errs = append(errs, b.translate(ctx, "delete member record", err))
		}
	}
	if _, err := b.cli.Revoke(ctx, b.lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		errs = append(errs, b.translate(ctx, "revoke lease", err))
	}
	return errs
}
