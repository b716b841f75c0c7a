package pgbackend

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regentd/regent/election"

	"github.com/regentd/regent/internal/boottime"
)

// actor is the single goroutine that owns the lock connection. Other
// goroutines hand it commands; between commands it renews on a timer,
// retries waiting campaigns and keeps a read pending on the connection
// (WaitForNotification), so that a NOTIFY, or the connection's end, is
// seen at once.
type actor struct {
	b *Backend

	// ctx is the actor's lifetime: cancelling it aborts the statement in
	// flight (which ends the connection) and stops the loop.
	ctx    context.Context
	cancel context.CancelFunc
	exited chan struct{}

	mu         sync.Mutex
	pending    []*command
	kicked     bool
	cancelWait context.CancelFunc
	closing    bool
	// termErr is what calls get once the actor has stopped.
	termErr error

	// Owned by the actor goroutine.
	sess        *session // nil while a read-only backend is disconnected
	queues      map[string]*queueState
	renewAt     time.Time
	retryAt     time.Time
	reconnectAt time.Time
	tryNow      bool
	lost        error // set when the session ended (read-write)
	connErr     error // last reconnection failure (read-only)
	// lostLeads are the leaderships still trusted when the session ended,
	// for their history (see noteLost).
	lostLeads []lostLead
	// renewals holds the latest renewal notice heard of each lock session
	// (see heardRenewal), pruned at most every renewalKeep.
	renewals       map[int32]heardRenewal
	renewalsPruned time.Time
}

// command is a function run on the actor goroutine.
type command struct {
	fn        func(a *actor) error
	done      chan error // buffered: the actor never blocks on it
	abandoned atomic.Bool
}

func newActor(b *Backend, sess *session) *actor {
	ctx, cancel := context.WithCancel(context.Background())
	now := boottime.Now()
	return &actor{
		b:       b,
		ctx:     ctx,
		cancel:  cancel,
		exited:  make(chan struct{}),
		sess:    sess,
		queues:  make(map[string]*queueState),
		renewAt: now.Add(b.s.RenewInterval),
		retryAt: now,
	}
}

// submit queues c and wakes the actor.
func (a *actor) submit(c *command) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.termErr != nil {
		return a.termErr
	}
	if a.closing {
		return election.ErrClosed
	}
	a.pending = append(a.pending, c)
	a.kickLocked()
	return nil
}

// call runs fn on the actor and returns its error. Cancelling ctx stops
// the wait; fn is skipped if it has not started, else it runs to its end.
func (a *actor) call(ctx context.Context, fn func(a *actor) error) error {
	return a.await(ctx, fn, true)
}

// callAlways is call for a command that must run even when ctx ends
// first, however long the actor is busy: ctx bounds only the wait.
func (a *actor) callAlways(ctx context.Context, fn func(a *actor) error) error {
	return a.await(ctx, fn, false)
}

func (a *actor) await(ctx context.Context, fn func(a *actor) error, abandon bool) error {
	c := &command{fn: fn, done: make(chan error, 1)}
	if err := a.submit(c); err != nil {
		return err
	}
	select {
	case err := <-c.done:
		return err
	case <-ctx.Done():
		if abandon {
			c.abandoned.Store(true)
		}
		return ctx.Err()
	}
}

// kick wakes the actor from its notification wait.
func (a *actor) kick() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.kickLocked()
}

func (a *actor) kickLocked() {
	a.kicked = true
	if a.cancelWait != nil {
		a.cancelWait()
	}
}

// requestClose asks the actor to resign everything and stop.
func (a *actor) requestClose() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closing = true
	a.kickLocked()
}

// take returns the queued commands and whether Close was requested.
func (a *actor) take() ([]*command, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	cmds := a.pending
	a.pending = nil
	a.kicked = false
	return cmds, a.closing
}

// run is the actor loop. It returns when the backend is closed or, for a
// read-write backend, when the session ends.
func (a *actor) run() {
	defer close(a.exited)
	for {
		cmds, closing := a.take()
		for _, c := range cmds {
			if c.abandoned.Load() {
				c.done <- context.Canceled
				continue
			}
			if err := a.unusable(); err != nil {
				c.done <- err
				continue
			}
			c.done <- c.fn(a)
			// Commands run one after another on the one connection: on a
			// slow path (hundreds of ms a statement) a batch of them (an
			// observation reads four record sets) would otherwise hold
			// the renewal back past the lease.
			if a.sess != nil && a.lost == nil {
				a.renewIfDue()
			}
		}
		if closing || a.ctx.Err() != nil {
			a.shutdown()
			a.stop(election.ErrClosed)
			return
		}
		if a.lost != nil {
			a.stop(a.lost)
			return
		}
		a.tick()
		if a.lost != nil {
			continue
		}
		a.wait()
	}
}

// unusable returns the error of a command that cannot run: the session
// ended, or a read-only backend cannot reconnect.
func (a *actor) unusable() error {
	if a.lost != nil {
		return a.lost
	}
	if a.sess == nil {
		if boottime.Now().Before(a.reconnectAt) && a.connErr != nil {
			return a.connErr
		}
		return a.reconnect()
	}
	return nil
}

// tick does the timed work: release lost leaderships, renew, drop
// withdrawn campaigns, retry waiting campaigns (on the retry tick, or when
// a lease holding one back becomes stale), finish takeovers whose wait is
// over.
func (a *actor) tick() {
	if a.sess == nil {
		if !boottime.Now().Before(a.reconnectAt) {
			_ = a.reconnect()
		}
		return
	}
	a.reconcile()
	if a.lost != nil {
		return
	}
	if a.renewIfDue(); a.lost != nil {
		return
	}
	// Campaigns withdrawn while the actor was busy are dropped before it
	// tries their locks, and again before it takes over: a lock taken
	// meanwhile is freed (dropWithdrawn).
	if a.dropWithdrawn(); a.lost != nil {
		return
	}
	if a.tryNow || a.staleDue() || (a.hasCandidates() && !boottime.Now().Before(a.retryAt)) {
		a.tryNow = false
		a.retryAt = boottime.Now().Add(a.b.s.RetryInterval)
		a.tryLocks()
	}
	if a.lost != nil {
		return
	}
	if a.dropWithdrawn(); a.lost != nil {
		return
	}
	if due := a.takeoverDue(); len(due) > 0 {
		// One batch per tick; the next tick goes on, after a renewal
		// if one is due.
		a.takeover(due)
	}
}

// renewIfDue renews the session's lease when its renewal is due (never on
// a read-only backend).
func (a *actor) renewIfDue() {
	if !a.b.s.ReadOnly && !boottime.Now().Before(a.renewAt) {
		a.renewAt = boottime.Now().Add(a.b.s.RenewInterval)
		a.renew()
	}
}

// staleDue reports whether the lease holding back some waiting queue has
// become stale by now (see queueState.staleAt).
func (a *actor) staleDue() bool {
	next := a.nextStale()
	return !next.IsZero() && !boottime.Now().Before(next)
}

// nextWake is when tick has work again.
func (a *actor) nextWake() time.Time {
	now := boottime.Now()
	next := now.Add(a.b.s.RenewInterval)
	if a.sess == nil {
		return a.reconnectAt
	}
	if a.tryNow {
		return now
	}
	if !a.b.s.ReadOnly && a.renewAt.Before(next) {
		next = a.renewAt
	}
	if a.hasCandidates() && a.retryAt.Before(next) {
		next = a.retryAt
	}
	if stale := a.nextStale(); !stale.IsZero() && stale.Before(next) {
		next = stale
	}
	for _, q := range a.queues {
		if q.locked && q.lead == nil && len(q.waiters) > 0 && q.waitUntil.Before(next) {
			next = q.waitUntil
		}
	}
	return next
}

// wait blocks until a notification arrives, the next timer is due or
// another goroutine kicks; a notification is handled before returning.
// The pending read is what notices at once a connection the server ended.
func (a *actor) wait() {
	next := a.nextWake()
	a.mu.Lock()
	if a.kicked || a.closing {
		a.mu.Unlock()
		return
	}
	ctx, cancel := context.WithDeadline(a.ctx, next)
	a.cancelWait = cancel
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.cancelWait = nil
		a.mu.Unlock()
		cancel()
	}()

	if a.sess == nil {
		<-ctx.Done()
		return
	}
	n, err := a.sess.conn.WaitForNotification(ctx)
	if n != nil {
		a.notification(n)
		a.drainNotices()
	}
	if err != nil && (ctx.Err() == nil || a.sess.conn.IsClosed()) {
		a.connLost(err)
	}
}

// drainNotices handles every notification already received, without
// reading the connection: handleNotice only sets what the next tick does,
// so a burst is coalesced into one renewal and one lock attempt. Handled
// one per actor round, the thousands of notices of a 5,000-queue
// rebalancing kept every replica renewing and trying its locks 10-20
// times a second for minutes after the cluster had settled.
func (a *actor) drainNotices() {
	done, cancel := context.WithCancel(context.Background())
	cancel() // an ended context: pgx returns buffered notifications only
	for a.sess != nil {
		n, _ := a.sess.conn.WaitForNotification(done)
		if n == nil {
			return
		}
		a.notification(n)
	}
}

// handleNotice wakes Changes subscribers and, on a release, the waiting
// campaigns of this cluster.
func (a *actor) handleNotice(payload string) {
	n, ok := parseNotice(payload)
	if !ok || n.Cluster != a.b.s.Cluster {
		return
	}
	a.b.subs.notify()
	if n.Kind != kindReleased {
		return
	}
	q := a.queues[n.Queue]
	if q != nil && q.lead != nil {
		// Our own record may have been released (ReleaseTerm): check now.
		a.renewAt = time.Time{}
	}
	if q != nil && len(q.waiters) > 0 {
		if q.locked && q.lead == nil {
			q.waitUntil = time.Time{}
		}
		a.tryNow = true
	}
}

// stmt returns the context of one statement.
func (a *actor) stmt() (context.Context, context.CancelFunc) {
	return context.WithTimeout(a.ctx, a.b.s.clientStatementTimeout)
}

// check classifies a statement error: one that ended the connection ends
// the session (read-write) or drops the connection (read-only), and is
// returned wrapping election.ErrSessionLost or election.ErrUnavailable.
func (a *actor) check(err error) error {
	if err == nil || a.sess == nil {
		return err
	}
	if isFatal(a.sess.conn, err) {
		return a.connLost(err)
	}
	if h := hint(err); h != "" {
		return fmt.Errorf("%w; %s", err, h)
	}
	return err
}

// connLost handles the end of the connection.
func (a *actor) connLost(cause error) error {
	msg := scrub(cause.Error(), a.b.pgcfg.Password)
	conn := a.sess.conn
	a.sess = nil
	ctx, cancel := context.WithTimeout(context.WithoutCancel(a.ctx), time.Second)
	defer cancel()
	if a.b.s.ReadOnly {
		_ = conn.Close(ctx)
		a.b.log.Warn("connection lost", "error", msg)
		a.reconnectAt = boottime.Now()
		return fmt.Errorf("%w: connection lost: %s", election.ErrUnavailable, msg)
	}
	a.lost = fmt.Errorf("%w: %s", election.ErrSessionLost, msg)
	a.b.log.Error("session lost", "error", msg)
	a.lostLeads = a.trustedLeads()
	// Leaderships end before anything that may block.
	a.loseAll(a.lost)
	_ = conn.Close(ctx)
	return a.lost
}

// reconnect reopens a read-only backend's connection.
func (a *actor) reconnect() error {
	sess, err := a.b.open(a.ctx)
	a.connErr = err
	if err != nil {
		a.reconnectAt = boottime.Now().Add(min(max(a.b.s.RetryInterval, 500*time.Millisecond), 5*time.Second))
		return err
	}
	a.sess = sess
	a.b.log.Info("reconnected")
	// Changes may have been missed while disconnected.
	a.b.subs.notify()
	return nil
}

// loseAll ends every leadership and fails every waiting campaign.
func (a *actor) loseAll(reason error) {
	for _, q := range a.queues {
		if q.lead != nil {
			q.lead.lose(reason)
			q.lead = nil
		}
		for _, w := range q.waiters {
			w.result <- campaignResult{err: reason}
		}
		q.waiters = nil
		q.locked = false
	}
}

// stop ends the actor: fails queued commands and later calls with
// reason, ends leaderships, closes the connection and Changes channels.
func (a *actor) stop(reason error) {
	a.mu.Lock()
	a.termErr = reason
	cmds := a.pending
	a.pending = nil
	a.mu.Unlock()
	for _, c := range cmds {
		c.done <- reason
	}
	a.loseAll(reason)
	if a.sess != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(a.ctx), time.Second)
		_ = a.sess.conn.Close(ctx)
		cancel()
		a.sess = nil
	}
	a.b.subs.closeAll()
	a.b.markDone()
	a.noteLost()
	a.cancel()
}

// markClosed makes later calls fail with ErrClosed (after a session loss
// they failed with ErrSessionLost).
func (a *actor) markClosed() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.termErr != nil {
		a.termErr = election.ErrClosed
	}
}

// shutdown resigns every leadership and removes the member record, for
// Close. Errors are logged: the connection's end frees the locks anyway.
func (a *actor) shutdown() {
	if a.sess == nil || a.b.s.ReadOnly {
		return
	}
	var queues []string
	var terms []int64
	for _, q := range a.queues {
		if q.lead != nil {
			queues = append(queues, q.name)
			terms = append(terms, q.lead.term)
			q.lead.lose(errResigned)
			q.lead = nil
		}
	}
	err := a.withHistory("shutdown", func(history bool) error {
		ctx, cancel := a.stmt()
		defer cancel()
		_, err := a.sess.conn.Exec(ctx, withHistoryEnd(sqlShutdownWith, sqlShutdownSelect, "rel", election.EndResign, history),
			a.b.s.Cluster, a.b.s.Node, queues, terms, noticePayload(a.b.s.Cluster, "", kindMember))
		return err
	})
	if err != nil {
		a.b.log.Warn("clean shutdown failed", "error", scrub(err.Error(), a.b.pgcfg.Password))
		return
	}
	a.b.log.Debug("resigned and left", "queues", queues)
}

// sqlShutdownWith and sqlShutdownSelect make the statement of shutdown:
// it releases the given leaderships (CTE rel; waking each queue's
// followers), deletes the member record and frees every advisory lock.
const (
	sqlShutdownWith = `
WITH rel AS (
	UPDATE regent_leaders SET released = true, expires_at = LEAST(` + leaseExpiryT + `, now())
	WHERE cluster = $1 AND node = $2 AND lock_pid = pg_backend_pid() AND released IS NOT TRUE
	  AND (queue, term) IN (SELECT * FROM unnest($3::text[], $4::bigint[]))
	RETURNING ` + historyReturning + `
), mem AS (
	DELETE FROM regent_members WHERE cluster = $1 AND node = $2 AND session_pid = pg_backend_pid()
	RETURNING node
), n AS (
	SELECT 1 FROM rel
	WHERE pg_notify('` + NotifyChannel + `', json_build_object('cluster', $1::text, 'queue', rel.queue, 'kind', '` + kindReleased + `')::text) IS NOT NULL
	UNION ALL
	SELECT 1 FROM mem WHERE pg_notify('` + NotifyChannel + `', $5) IS NOT NULL
)`
	sqlShutdownSelect = `
SELECT (SELECT count(*) FROM n), pg_advisory_unlock_all()`
)

// conn returns the connection, for commands (never nil: commands run only
// while connected).
func (a *actor) conn() *pgx.Conn { return a.sess.conn }
