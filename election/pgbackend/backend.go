package pgbackend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/internal/boottime"
)

// errReadOnly is returned by Campaign and SetMember on a read-only backend,
// which has no session.
var errReadOnly = fmt.Errorf("pgbackend: no session to campaign with: %w", election.ErrReadOnly)

// Backend is one replica's connection to Postgres: one dedicated lock
// connection (a read-only backend: one plain connection) shared by every
// queue it campaigns for. It implements election.Backend.
type Backend struct {
	s     settings
	log   hclog.Logger
	pgcfg *pgx.ConnConfig
	subs  *subscribers
	act   *actor

	lockPID atomic.Int32
	// renewals counts the renewal statements sent (for tests).
	renewals atomic.Int64
	// renewedAt is the send time (internal/boottime) of the last
	// successful renewal of the session row, or of its registration.
	renewedAt atomic.Pointer[time.Time]

	done     chan struct{}
	doneOnce sync.Once

	closeOnce sync.Once

	// claimsMu guards claims: per queue, the Campaign call running or the
	// leadership it won, so that a second Campaign for the queue fails at
	// once with election.ErrBusy (see claim).
	claimsMu sync.Mutex
	claims   map[string]*queueClaim
}

// queueClaim is what holds a queue's one candidacy on this Backend: a
// Campaign call that has not returned, or the leadership it won, until
// that leadership is Done.
type queueClaim struct {
	campaigning bool
	lead        *leadership
}

var _ election.Backend = (*Backend)(nil)

// New connects to Postgres, refuses a transaction-mode pooler
// (election.ErrUnsupportedPooler) and a read-only standby
// (election.ErrUnavailable), migrates the schema and starts the goroutine
// that owns the connection. It fails within cfg.DialTimeout when the
// server is unreachable, with an error wrapping election.ErrUnavailable
// that names host:port (never the password). Cancelling ctx aborts New.
//
// opts.Cluster is required, and opts.Node unless opts.ReadOnly. Zero
// durations get their defaults (election.Timing), and the timing must
// pass election.Timing's Validate.
func New(ctx context.Context, cfg Config, opts election.Options, log hclog.Logger) (*Backend, error) {
	s, err := newSettings(cfg, opts)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	log = log.Named("pgbackend").With("cluster", s.Cluster, "node", s.Node)
	pgcfg, err := pgx.ParseConfig(s.URL)
	if err != nil {
		return nil, fmt.Errorf("pgbackend: bad postgres URL %s: %s", RedactURL(s.URL), scrubURLError(err, s.URL))
	}
	pgcfg.RuntimeParams["application_name"] = applicationName(s.Cluster, s.Node)
	pgcfg.ConnectTimeout = s.DialTimeout
	pgcfg.DialFunc = s.keepalive.dial
	b := &Backend{
		s:      s,
		log:    log,
		pgcfg:  pgcfg,
		subs:   newSubscribers(),
		done:   make(chan struct{}),
		claims: make(map[string]*queueClaim),
	}
	sess, err := b.open(ctx)
	if err != nil {
		return nil, err
	}
	err = b.migrate(ctx, sess)
	if err == nil && !s.ReadOnly {
		registered := boottime.Now()
		if err = b.registerSession(ctx, sess); err == nil {
			b.renewedAt.Store(&registered)
		}
	}
	if err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.clientStatementTimeout)
		defer cancel()
		_ = sess.conn.Close(cctx)
		return nil, err
	}
	if !s.ReadOnly {
		b.lockPID.Store(sess.pid)
	}
	b.act = newActor(b, sess)
	go b.act.run()
	log.Info("connected", "target", targets(&pgcfg.Config), "lock_pid", b.LockPID(), "read_only", s.ReadOnly,
		"keepalive_bound", s.keepalive.bound())
	return b, nil
}

// migrate runs the schema migration on sess. A read-only backend whose
// role may not create tables carries on (reads fail if tables are missing).
func (b *Backend) migrate(ctx context.Context, sess *session) error {
	mctx, cancel := context.WithTimeout(ctx, b.s.clientStatementTimeout)
	defer cancel()
	err := migrate(mctx, sess.conn, b.log)
	if err == nil {
		return nil
	}
	if b.s.ReadOnly && isInsufficientPrivilege(err) {
		b.log.Warn("cannot migrate schema from a read-only backend", "error", err.Error())
		return nil
	}
	if isFatal(sess.conn, err) {
		return b.unavailable("migrate schema", err)
	}
	return fmt.Errorf("pgbackend: %s", scrub(err.Error(), b.pgcfg.Password))
}

// scrubURLError is the text of a URL parse error without the password.
func scrubURLError(err error, url string) string {
	msg := err.Error()
	if url != "" {
		msg = strings.ReplaceAll(msg, url, RedactURL(url))
	}
	if cfg, perr := pgx.ParseConfig(url); perr == nil {
		msg = scrub(msg, cfg.Password)
	}
	return msg
}

// LockPID is the server process id of the lock connection (0 for a
// read-only backend). An administrator ending it (pg_terminate_backend)
// ends the session.
func (b *Backend) LockPID() int { return int(b.lockPID.Load()) }

// Campaign blocks until this replica leads queue, records payload in the
// leader record and returns the leadership. Cancelling ctx withdraws the
// candidacy (a leadership won meanwhile is resigned): Campaign waits up
// to a statement timeout for the withdrawal, which the actor does even if
// it is busy for longer, and the withdrawn candidacy never wins later. It
// returns ErrSessionLost when the session ends, ErrClosed after Close,
// ErrReadOnly on a read-only backend, and ErrBusy at once, without asking
// the actor, while another Campaign of this Backend for queue runs or its
// leadership of queue is not Done.
func (b *Backend) Campaign(ctx context.Context, queue string, payload []byte) (election.Leadership, error) {
	if b.s.ReadOnly {
		return nil, errReadOnly
	}
	if queue == "" {
		return nil, errors.New("pgbackend: empty queue name")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := b.claim(queue); err != nil {
		return nil, err
	}
	l, err := b.campaign(ctx, queue, payload)
	b.unclaim(queue, l)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// claim marks queue as campaigned for, or fails with election.ErrBusy if
// it already is, or is led by a leadership not Done.
func (b *Backend) claim(queue string) error {
	b.claimsMu.Lock()
	defer b.claimsMu.Unlock()
	if c := b.claims[queue]; c != nil && (c.campaigning || (c.lead != nil && c.lead.err() == nil)) {
		return fmt.Errorf("%w: %s", election.ErrBusy, queue)
	}
	b.claims[queue] = &queueClaim{campaigning: true}
	return nil
}

// unclaim ends the Campaign call's claim on queue: the leadership it won,
// if any, holds the queue until it is Done.
func (b *Backend) unclaim(queue string, l *leadership) {
	b.claimsMu.Lock()
	defer b.claimsMu.Unlock()
	if l == nil {
		delete(b.claims, queue)
		return
	}
	b.claims[queue] = &queueClaim{lead: l}
}

// campaign is Campaign once the queue is claimed.
func (b *Backend) campaign(ctx context.Context, queue string, payload []byte) (*leadership, error) {
	w := &waiter{payload: clone(payload), done: ctx.Done(), result: make(chan campaignResult, 1)}
	if err := b.act.call(ctx, func(a *actor) error { a.addWaiter(queue, w); return nil }); err != nil {
		if ctx.Err() == nil {
			return nil, err
		}
		// The candidacy may have been registered all the same: withdraw.
	} else {
		select {
		case r := <-w.result:
			if r.err != nil {
				return nil, r.err
			}
			return r.lead, nil
		case <-ctx.Done():
		}
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.s.clientStatementTimeout)
	defer cancel()
	_ = b.act.callAlways(cctx, func(a *actor) error { a.withdraw(queue, w); return nil })
	return nil, ctx.Err()
}

// Leader returns the live leader record of queue, ErrNoLeader, or an
// error wrapping ErrCorruptRecord naming the record. Cancelling ctx stops
// waiting.
func (b *Backend) Leader(ctx context.Context, queue string) (election.LeaderRecord, error) {
	var rec election.LeaderRecord
	err := b.act.call(ctx, func(a *actor) error {
		var err error
		rec, err = a.leader(queue)
		return err
	})
	if err != nil {
		// The actor may still write rec after a cancelled call: never read it then.
		return election.LeaderRecord{}, err
	}
	return rec, nil
}

// Leaders returns every live leader record of the cluster, ordered by
// queue; undecodable ones have Err set.
func (b *Backend) Leaders(ctx context.Context) ([]election.LeaderRecord, error) {
	var recs []election.LeaderRecord
	err := b.act.call(ctx, func(a *actor) error {
		var err error
		recs, err = a.leaders()
		return err
	})
	if err != nil {
		return nil, err
	}
	return recs, nil
}

// SetMember publishes this replica's member record. It is renewed with
// the leases and disappears when the session ends.
func (b *Backend) SetMember(ctx context.Context, role string, payload []byte) error {
	if b.s.ReadOnly {
		return errReadOnly
	}
	payload = clone(payload)
	return b.act.call(ctx, func(a *actor) error { return a.setMember(role, payload) })
}

// Members returns the member records of every live replica of the
// cluster: not expired, and whose session still exists.
func (b *Backend) Members(ctx context.Context) ([]election.MemberRecord, error) {
	var recs []election.MemberRecord
	err := b.act.call(ctx, func(a *actor) error {
		var err error
		recs, err = a.members()
		return err
	})
	if err != nil {
		return nil, err
	}
	return recs, nil
}

// Changes returns a channel signalled on every NOTIFY about this cluster.
// It is closed when ctx is done, the backend closes or (read-write) the
// session ends.
func (b *Backend) Changes(ctx context.Context) <-chan struct{} {
	return b.subs.add(ctx)
}

// RequestStepDown asks the leader of queue to resign; with to set, other
// replicas hold back for the lease TTL so that to wins.
func (b *Backend) RequestStepDown(ctx context.Context, queue, to string) error {
	return b.act.call(ctx, func(a *actor) error { return a.requestStepDown(queue, to) })
}

// StepDownRequest returns the request pending against queue's current
// leader.
func (b *Backend) StepDownRequest(ctx context.Context, queue string) (election.StepDownRequest, bool, error) {
	var (
		req election.StepDownRequest
		ok  bool
	)
	err := b.act.call(ctx, func(a *actor) error {
		var err error
		req, ok, err = a.stepDownRequest(queue)
		return err
	})
	if err != nil {
		return election.StepDownRequest{}, false, err
	}
	return req, ok, nil
}

// StepDownRequests returns every pending step-down request of the cluster.
func (b *Backend) StepDownRequests(ctx context.Context) ([]election.StepDownRequest, error) {
	var out []election.StepDownRequest
	err := b.act.call(ctx, func(a *actor) error {
		var err error
		out, err = a.stepDownRequests()
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ReleaseTerm marks queue's leader record released if it still holds
// term, and wakes followers.
func (b *Backend) ReleaseTerm(ctx context.Context, queue string, term int64) error {
	return b.act.call(ctx, func(a *actor) error { return a.releaseTerm(queue, term) })
}

// Done is closed when the session is lost or the backend is closed.
func (b *Backend) Done() <-chan struct{} { return b.done }

// SessionConfirmed reports whether the server confirmed the session
// recently: the last successful renewal of its session row was sent less
// than the timing's ConfirmWindow (two renew intervals) ago. It is false
// once the session is lost or the backend closed, and on a read-only
// backend. It implements election.SessionConfirmer: a replica cut off
// from Postgres says so before its connection is found dead (keepalives,
// tcp_user_timeout: up to keepalive_bound).
func (b *Backend) SessionConfirmed() bool {
	select {
	case <-b.done:
		return false
	default:
	}
	at := b.renewedAt.Load()
	return !b.s.ReadOnly && at != nil && boottime.Since(*at) < b.s.ConfirmWindow()
}

func (b *Backend) markDone() {
	b.doneOnce.Do(func() { close(b.done) })
}

// Close resigns every leadership, deletes the member record and closes
// the connection. It is idempotent; later calls fail with ErrClosed. When
// ctx ends first the statement in flight is aborted and the connection
// closed (its end frees the locks; the leases then expire).
func (b *Backend) Close(ctx context.Context) error {
	b.closeOnce.Do(func() {
		b.act.requestClose()
		select {
		case <-b.act.exited:
		case <-ctx.Done():
			b.act.cancel()
			<-b.act.exited
		}
		b.act.markClosed()
		b.log.Info("closed")
	})
	return nil
}
