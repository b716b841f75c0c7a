package pgbackend

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/internal/boottime"
)

// queueState is the actor's view of one queue this replica campaigns for
// or leads. Owned by the actor goroutine.
type queueState struct {
	name string
	key  int64
	// waiters are the Campaign calls waiting, first come first served.
	waiters []*waiter
	// locked: this session holds the queue's advisory lock.
	locked bool
	// lead is the leadership held, nil when none.
	lead *leadership
	// waitUntil: while locked without leading, when to retry the takeover
	// (the previous lease's expiry on the server's clock, seen locally).
	waitUntil time.Time
	// staleAt: while waiting for the lock, when the lease of the session
	// holding it becomes stale (expired beyond the grace), as last
	// reported by the server; zero when unknown. The actor tries the locks
	// again then, instead of on the next retry tick, so that a frozen or
	// cut-off leader's session is ended as soon as it may be.
	staleAt time.Time
	// staleWarned is the lock pid last warned about, to log once.
	staleWarned int32
	// prev is the lease of the previous leader as last read, and since
	// when this replica knows it: until its TTL has passed on this
	// replica's clock, the queue is not taken over, nor its holder's
	// session ended, whatever the server's clock says (see hold.go).
	prev leaseSeen
}

// candidate reports whether q waits for its lock.
func (q *queueState) candidate() bool {
	return len(q.waiters) > 0 && !q.locked && q.lead == nil
}

type waiter struct {
	payload []byte
	// done is the Campaign's ctx.Done(): once it is closed the campaign
	// is withdrawn, and the actor never lets it win (dropWithdrawn).
	done   <-chan struct{}
	result chan campaignResult // buffered: one result
}

// withdrawn reports whether the campaign's context has ended.
func (w *waiter) withdrawn() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

type campaignResult struct {
	lead *leadership
	err  error
}

func (a *actor) queue(name string) *queueState {
	q := a.queues[name]
	if q == nil {
		q = &queueState{name: name, key: LockKey(a.b.s.Cluster, name)}
		a.queues[name] = q
	}
	return q
}

// forget drops the state of a queue with nothing going on.
func (a *actor) forget(q *queueState) {
	if q.lead == nil && !q.locked && len(q.waiters) == 0 {
		delete(a.queues, q.name)
	}
}

func (a *actor) addWaiter(queue string, w *waiter) {
	q := a.queue(queue)
	q.waiters = append(q.waiters, w)
	if q.locked && q.lead == nil {
		q.waitUntil = time.Time{}
	}
	a.tryNow = true
}

// removeWaiter withdraws a Campaign whose context ended. A lock taken for
// it, while waiting out the previous lease, is freed.
func (a *actor) removeWaiter(queue string, w *waiter) {
	q := a.queues[queue]
	if q == nil {
		return
	}
	for i, x := range q.waiters {
		if x == w {
			q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
			break
		}
	}
	if len(q.waiters) == 0 {
		q.staleAt = time.Time{}
		if q.locked && q.lead == nil {
			a.unlock(q, false)
		}
	}
	a.forget(q)
}

// withdraw ends the candidacy w of a Campaign whose context ended: w is
// removed, and a leadership already handed to it, which Campaign did not
// take, is resigned. It runs even when Campaign stopped waiting for it
// (callAlways), so a withdrawn campaign never keeps a queue.
func (a *actor) withdraw(queue string, w *waiter) {
	a.removeWaiter(queue, w)
	select {
	case r := <-w.result:
		if r.lead != nil {
			a.resignWithdrawn(r.lead)
		}
	default:
	}
}

// dropWithdrawn removes the waiters whose campaign was withdrawn (their
// context ended) without waiting for Campaign's withdraw command, which
// may be queued behind the actor's work (a long statement, a large
// batch): the actor must not try a lock, or take over, for a campaign
// nobody waits for. A lock taken for a queue left without a waiter is
// freed (removeWaiter).
func (a *actor) dropWithdrawn() {
	for _, q := range a.queues {
		if !slices.ContainsFunc(q.waiters, (*waiter).withdrawn) {
			continue
		}
		for _, w := range slices.Clone(q.waiters) {
			if w.withdrawn() {
				a.removeWaiter(q.name, w)
				if a.lost != nil {
					return
				}
			}
		}
	}
}

// resignWithdrawn resigns a leadership won for a campaign withdrawn
// meanwhile: the record is released and the lock freed in one statement,
// so followers take over at once.
func (a *actor) resignWithdrawn(l *leadership) {
	a.b.log.Info("campaign withdrawn after it won: resigning", "queue", l.queue, "term", l.term)
	if err := a.resign(l); err != nil {
		a.b.log.Warn("resign of a withdrawn campaign failed", "queue", l.queue, "term", l.term,
			"error", scrub(err.Error(), a.b.pgcfg.Password))
	}
}

// hasCandidates reports whether some queue waits for its lock.
func (a *actor) hasCandidates() bool {
	for _, q := range a.queues {
		if q.candidate() {
			return true
		}
	}
	return false
}

// nextStale returns the earliest staleAt of the queues waiting for their
// lock, zero if none is known.
func (a *actor) nextStale() time.Time {
	var next time.Time
	for _, q := range a.queues {
		if q.candidate() && !q.staleAt.IsZero() && (next.IsZero() || q.staleAt.Before(next)) {
			next = q.staleAt
		}
	}
	return next
}

// sqlTryLocks tries the lock of every waiting queue in one round trip. A
// queue held back by a step-down request naming another node is not tried.
// For each it reports whether the lock was taken; whether no leadership is
// in force (no record, a released one, or a lease stale: expired beyond
// the grace), so that a lock held all the same is held by a session that
// does not lead (see sqlLockHolders); for a lease that is neither
// released nor stale yet, how long until it becomes stale, in
// microseconds on the server's clock (NULL otherwise), so the follower can
// try again then; and the lease as a follower dates it on its own clock
// (leaseSeenL). The lease's expiry is read once per queue (LATERAL x),
// whatever uses it.
const sqlTryLocks = `
SELECT q.queue,
       CASE WHEN sd.hold IS TRUE THEN false ELSE pg_try_advisory_lock(q.key) END,
       sd.hold IS NOT TRUE AND (l.released IS TRUE
           OR COALESCE(x.expires_at < now() - $4 * interval '1 microsecond', true)),
       CASE WHEN l.released IS NOT TRUE AND x.expires_at >= now() - $4 * interval '1 microsecond'
            THEN GREATEST(CEIL(EXTRACT(EPOCH FROM (x.expires_at + $4 * interval '1 microsecond' - now())) * 1e6)::bigint, 0)
       END,
       ` + leaseSeenL + `
FROM unnest($2::text[], $3::bigint[]) AS q(queue, key)
LEFT JOIN regent_leaders l ON l.cluster = $1 AND l.queue = q.queue
LEFT JOIN regent_sessions ls ON ls.cluster = l.cluster AND ls.pid = l.lock_pid
LEFT JOIN LATERAL (SELECT ` + leaseExpiryL + ` AS expires_at) x ON true
LEFT JOIN LATERAL (
	SELECT true AS hold FROM regent_stepdowns s
	WHERE s.cluster = $1 AND s.queue = q.queue AND s.to_node <> '' AND s.to_node <> $5
	  AND s.hold_until > now() AND (l.term IS NULL OR l.term <= s.term)
) sd ON true`

func (a *actor) tryLocks() {
	var names []string
	var keys []int64
	for _, q := range a.queues {
		if q.candidate() {
			names = append(names, q.name)
			keys = append(keys, q.key)
			// Set again from this round's answer; a failed round falls
			// back to the retry tick.
			q.staleAt = time.Time{}
		}
	}
	if len(names) == 0 {
		return
	}
	results, sent, err := a.runTryLocks(names, keys)
	if err != nil {
		if _ = a.check(err); a.lost != nil {
			return
		}
		a.b.log.Warn("lock attempt failed", "error", scrub(err.Error(), a.b.pgcfg.Password))
		a.unlockAttempted(keys)
		return
	}
	answered := boottime.Now()
	var held []*queueState
	for _, t := range results {
		q := a.queue(t.queue)
		a.observe(q, t.obs, answered)
		if a.lockAnswered(q, t, sent) {
			held = append(held, q)
		}
	}
	if len(held) > 0 {
		a.endStaleHolders(held)
	}
}

// lockTry is one queue's row of the lock attempt.
type lockTry struct {
	queue string
	got   bool
	// noLeader: no leadership is in force.
	noLeader bool
	// staleIn: microseconds until the lease becomes stale, if it runs.
	staleIn *int64
	obs     leaseObs
}

// runTryLocks runs the lock attempt for the queues names (keys: their
// lock keys) and returns its rows and when it was sent.
func (a *actor) runTryLocks(names []string, keys []int64) ([]lockTry, time.Time, error) {
	var results []lockTry
	ctx, cancel := a.stmt()
	defer cancel()
	sent := boottime.Now()
	rows, err := a.conn().Query(ctx, sqlTryLocks, a.b.s.Cluster, names, keys,
		a.b.s.staleGrace.Microseconds(), a.b.s.Node)
	if err != nil {
		return nil, sent, err
	}
	defer rows.Close()
	for rows.Next() {
		var t lockTry
		if err := rows.Scan(&t.queue, &t.got, &t.noLeader, &t.staleIn,
			&t.obs.ver, &t.obs.pid, &t.obs.row, &t.obs.ttl); err != nil {
			return nil, sent, err
		}
		results = append(results, t)
	}
	return results, sent, rows.Err()
}

// lockAnswered acts on one queue's answer to the lock attempt sent at sent,
// and reports whether the lock is held by a session that does not lead
// and whose lease has run out here too (to be ended).
func (a *actor) lockAnswered(q *queueState, t lockTry, sent time.Time) (endHolder bool) {
	grace := a.b.s.staleGrace
	switch {
	case t.got:
		// The takeover statement runs in tick, for at most
		// takeoverBatch queues per tick, once the old leader's
		// trust has surely ended on this replica's clock.
		q.locked = true
		q.staleWarned = 0
		_, q.waitUntil = q.prev.holding(0)
	case t.noLeader:
		// Held by a session that does not lead: a stale leader, or
		// a follower that took the lock and has not recorded itself
		// (waiting out the previous lease, or frozen). Nobody's
		// session is ended before the previous lease has also run
		// out on this replica's own clock (a step of the server's
		// clock, or a lease first seen late).
		if holding, wake := q.prev.holding(grace); holding {
			q.staleAt = wake
			return false
		}
		return true
	case t.staleIn != nil:
		// The server computed the wait from its now(), which came
		// after sent: at sent + wait the lease may be a little short
		// of stale (then the next round reports the rest), never past
		// it by more than the millisecond added.
		q.staleAt = sent.Add(time.Duration(*t.staleIn)*time.Microsecond + time.Millisecond)
		if held, wake := q.prev.holding(grace); held && wake.After(q.staleAt) {
			q.staleAt = wake
		}
	}
	return false
}

// sqlLockHolders finds, for each queue in $2 (its lock as pg_locks shows
// it in $3, $4), the session other than this one that holds the lock,
// whether that session is stale, and otherwise how long until it is, in
// microseconds on the server's clock (NULL: never, it has no lease of its
// own). A holder is stale when its own session lease (its regent_sessions
// row, which every live replica renews, leader or not: see sqlRenew)
// expired more than the grace ago, or when it is the session the queue's
// record names (lock_pid) and the record's lease did. pg_locks is read
// once, whatever the number of queues.
const sqlLockHolders = `
SELECT q.queue, lk.pid,
       COALESCE(s.expires_at < now() - $5 * interval '1 microsecond', false)
       OR COALESCE(l.lock_pid = lk.pid AND l.released IS NOT TRUE
                   AND x.expires_at < now() - $5 * interval '1 microsecond', false),
       CASE WHEN s.expires_at >= now() - $5 * interval '1 microsecond'
            THEN GREATEST(CEIL(EXTRACT(EPOCH FROM (s.expires_at + $5 * interval '1 microsecond' - now())) * 1e6)::bigint, 0)
       END
FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS q(queue, classid, objid)
JOIN pg_locks lk ON lk.locktype = 'advisory' AND lk.granted AND lk.objsubid = 1
	AND lk.database = (SELECT oid FROM pg_database WHERE datname = current_database())
	AND (lk.classid::bigint, lk.objid::bigint) = (q.classid, q.objid)
	AND lk.pid <> pg_backend_pid()
LEFT JOIN regent_leaders l ON l.cluster = $1 AND l.queue = q.queue
LEFT JOIN LATERAL (SELECT ` + leaseExpiryL + ` AS expires_at) x ON true
LEFT JOIN regent_sessions s ON s.cluster = $1 AND s.pid = lk.pid`

// endStaleHolders ends the stale sessions (sqlLockHolders) that hold the
// locks of qs, which no leadership holds in force; for a holder not stale
// yet it schedules the next attempt for the moment it will be. So a
// session that holds a queue's lock without leading it (a leader whose
// lease expired, a follower frozen or cut off while it waits out the
// previous lease or before it records itself) keeps the queue at most
// until its own lease, renewed with its every renewal, is stale.
func (a *actor) endStaleHolders(qs []*queueState) {
	names := make([]string, len(qs))
	classids := make([]int64, len(qs))
	objids := make([]int64, len(qs))
	for i, q := range qs {
		names[i] = q.name
		classids[i], objids[i] = lockIDs(q.key)
	}
	type holder struct {
		queue   string
		pid     int32
		stale   bool
		staleIn *int64
	}
	var holders []holder
	ctx, cancel := a.stmt()
	sent := boottime.Now()
	rows, err := a.conn().Query(ctx, sqlLockHolders, a.b.s.Cluster, names, classids, objids,
		a.b.s.staleGrace.Microseconds())
	if err == nil {
		for rows.Next() {
			var h holder
			if err = rows.Scan(&h.queue, &h.pid, &h.stale, &h.staleIn); err != nil {
				break
			}
			holders = append(holders, h)
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	cancel()
	if err != nil {
		if _ = a.check(err); a.lost == nil {
			a.b.log.Warn("cannot read lock holders", "queues", len(qs), "error", scrub(err.Error(), a.b.pgcfg.Password))
		}
		return
	}
	// By session: one statement per stale session, not per queue (a dead
	// replica's pid holds thousands of locks, and each statement reads
	// pg_locks).
	stale := map[int32][]*queueState{}
	var pids []int32
	for _, h := range holders {
		q := a.queues[h.queue]
		switch {
		case q == nil:
		case h.stale:
			if stale[h.pid] == nil {
				pids = append(pids, h.pid)
			}
			stale[h.pid] = append(stale[h.pid], q)
		case h.staleIn != nil:
			q.staleAt = sent.Add(time.Duration(*h.staleIn)*time.Microsecond + time.Millisecond)
		}
	}
	for _, pid := range pids {
		a.endStale(stale[pid], pid)
		if a.lost != nil {
			return
		}
	}
}

// unlockAttempted frees the locks of a failed try-lock statement: session
// advisory locks outlive the failed statement, and which of them were
// granted is unknown. Unlocking one not held only raises a warning. If
// even that fails, the connection is ended, which frees them all: a lock
// held by mistake would keep the queue from every other replica.
func (a *actor) unlockAttempted(keys []int64) {
	ctx, cancel := a.stmt()
	defer cancel()
	_, err := a.conn().Exec(ctx, `SELECT count(pg_advisory_unlock(k)) FROM unnest($1::bigint[]) AS k`, keys)
	if err == nil {
		return
	}
	if _ = a.check(err); a.lost != nil {
		return
	}
	a.connLost(fmt.Errorf("cannot free the locks of a failed attempt: %w", err))
}

// sqlTakeover records this replica as leader of each queue in $2 (one row
// per queue, with its payload $6/$7 and notice $9) whose previous lease is
// released, or else is the version $10 that this replica has waited out
// on its own clock (NULL: not yet; see hold.go) and expired on the
// server's clock, incrementing the term in the same statement (so in the
// same transaction); for every other queue it returns how long the
// previous lease still runs on the server's clock, and the lease as read
// (leaseSeenL). Run only while holding the queues' locks. One statement takes over many queues: a replica that
// inherits a dead replica's thousands of queues takes them in a few round
// trips, not thousands.
const sqlTakeover = `
WITH ` + sqlTakeoverWant + `, ` + sqlTakeoverUp + sqlTakeoverSelect

// sqlTakeoverWant is the part of sqlTakeover that lists the queues to take
// over, as a CTE named want.
const sqlTakeoverWant = `want AS (
	SELECT * FROM unnest($2::text[], $6::jsonb[], $7::bytea[], $9::text[], $10::text[])
		AS w(queue, payload, payload_raw, notice, ver)
)`

// sqlTakeoverUp is the part of sqlTakeover that records the new leaders,
// as a CTE named up returning each queue taken and its new term, their
// records following this session's lease (up_sess), which it sets to
// now + TTL. A queue whose previous record is neither released nor of
// the version waited out is left alone: the statement's snapshot, taken
// with the lock held, holds every renewal its leader counted (a session
// frees its locks only after its last commit, or after giving up the
// leadership), so no renewal newer than that version counts.
const sqlTakeoverUp = `up AS (
	INSERT INTO regent_leaders AS l
		(cluster, queue, node, host, pid, term, payload, payload_raw,
		 elected_at, expires_at, lock_pid, released)
	SELECT $1, w.queue, $3, $4, $5, 1, w.payload, w.payload_raw,
		now(), NULL, pg_backend_pid(), false
	FROM want w
	WHERE NOT EXISTS (
		SELECT 1 FROM regent_leaders l
		LEFT JOIN regent_sessions ls ON ls.cluster = l.cluster AND ls.pid = l.lock_pid
		WHERE l.cluster = $1 AND l.queue = w.queue AND l.released IS NOT TRUE
		  AND (w.ver IS NULL OR ` + leaseVersionL + ` IS DISTINCT FROM w.ver))
	ON CONFLICT (cluster, queue) DO UPDATE SET
		node = excluded.node, host = excluded.host, pid = excluded.pid,
		term = GREATEST(COALESCE(l.term, 0), 0) + 1,
		payload = excluded.payload, payload_raw = excluded.payload_raw,
		elected_at = excluded.elected_at, renewed_at = NULL,
		expires_at = NULL, lock_pid = excluded.lock_pid, released = false
	WHERE l.released IS TRUE OR ` + leaseExpiryL + ` IS NULL OR ` + leaseExpiryL + ` <= now()
	RETURNING l.queue, l.term
), up_sess AS (
	INSERT INTO regent_sessions AS s (cluster, pid, node, renewed_at, expires_at)
	SELECT $1, pg_backend_pid(), $3, now(), now() + $8 * interval '1 microsecond'
	WHERE EXISTS (SELECT 1 FROM up)
	ON CONFLICT (cluster, pid) DO UPDATE SET
		node = excluded.node, renewed_at = excluded.renewed_at, expires_at = excluded.expires_at
	RETURNING pid, ` + sqlNotifyRenewal + `
)`

// sqlTakeoverSelect is the result of sqlTakeover: per queue, the new term,
// or how long the previous lease still runs and that lease as read.
const sqlTakeoverSelect = `
SELECT up.queue, up.term, NULL::bigint, NULL::text, NULL::integer, NULL::text, NULL::bigint
FROM up JOIN want w ON w.queue = up.queue
WHERE pg_notify('` + NotifyChannel + `', w.notice) IS NOT NULL
UNION ALL
SELECT l.queue, NULL, GREATEST(CEIL(EXTRACT(EPOCH FROM (` + leaseExpiryL + ` - now())) * 1e6)::bigint, 0),
	` + leaseSeenL + `
FROM regent_leaders l JOIN want w ON w.queue = l.queue
LEFT JOIN regent_sessions ls ON ls.cluster = l.cluster AND ls.pid = l.lock_pid
WHERE l.cluster = $1 AND NOT EXISTS (SELECT 1 FROM up WHERE up.queue = l.queue)`

// takeoverBatch bounds the queues of one takeover statement, so that one
// tick's statement stays short and the renewal, checked at the start of
// every tick, is never late by much: a replica that won thousands of locks
// at once (a cold start with 5,000 queues) takes them over a batch per
// tick.
const takeoverBatch = 256

// takeoverDue returns the queues, at most takeoverBatch, whose lock this
// session holds, that have a waiting campaign, and whose takeover is due.
func (a *actor) takeoverDue() []*queueState {
	var due []*queueState
	now := boottime.Now()
	for _, q := range a.queues {
		if q.locked && q.lead == nil && len(q.waiters) > 0 && !now.Before(q.waitUntil) {
			due = append(due, q)
			if len(due) == takeoverBatch {
				break
			}
		}
	}
	return due
}

// takeover becomes leader of each of qs, whose locks this session holds,
// for its first waiter; or, while a queue's previous lease runs, schedules
// its retry for when that lease will have expired.
func (a *actor) takeover(qs []*queueState) {
	s := &a.b.s
	results, sent, err := a.runTakeover(qs)
	if err != nil {
		if a.check(err) != nil && a.lost != nil {
			return
		}
		a.b.log.Warn("takeover failed", "queue", qs[0].name, "queues", len(qs), "error", scrub(err.Error(), a.b.pgcfg.Password))
		for _, q := range qs {
			q.waitUntil = boottime.Now().Add(s.RetryInterval)
		}
		return
	}
	at := boottime.Now()
	answered := make(map[string]bool, len(results))
	var withdrawn []*leadership
	for _, r := range results {
		q := a.queues[r.queue]
		if q == nil || answered[r.queue] {
			continue
		}
		answered[r.queue] = true
		if l := a.tookOver(q, r, sent, at); l != nil {
			withdrawn = append(withdrawn, l)
		}
	}
	for _, q := range qs {
		if !answered[q.name] {
			// Not possible while the record exists or was inserted; retry.
			q.waitUntil = boottime.Now().Add(s.RetryInterval)
		}
	}
	for _, l := range withdrawn {
		a.resignWithdrawn(l)
		if a.lost != nil {
			return
		}
	}
}

// takeoverResult is one queue's row of the takeover statement: its new
// term, or none and how long the previous lease still runs.
type takeoverResult struct {
	queue      string
	term       *int64
	waitMicros *int64
	obs        leaseObs
}

// takeoverArgs returns the takeover statement's arguments for qs.
func (a *actor) takeoverArgs(qs []*queueState) []any {
	s := &a.b.s
	names := make([]string, len(qs))
	jsonTexts := make([]any, len(qs))
	raws := make([][]byte, len(qs))
	notices := make([]string, len(qs))
	// vers: the version of each previous lease waited out on this
	// replica's clock; nil while it may still be trusted (then only a
	// released record is taken over).
	vers := make([]*string, len(qs))
	for i, q := range qs {
		names[i] = q.name
		jsonTexts[i], raws[i] = encodePayload(q.waiters[0].payload)
		notices[i] = noticePayload(s.Cluster, q.name, kindElected)
		if held, _ := q.prev.holding(0); !held {
			vers[i] = &q.prev.ver
		}
	}
	return []any{s.Cluster, names, s.Node, s.Host, s.PID,
		jsonTexts, raws, s.LeaseTTL.Microseconds(), notices, vers}
}

// runTakeover runs the takeover statement for qs and returns its rows and
// when it was sent.
func (a *actor) runTakeover(qs []*queueState) ([]takeoverResult, time.Time, error) {
	var results []takeoverResult
	var sent time.Time
	err := a.withHistory("takeover", func(history bool) error {
		results = results[:0]
		sql, args := sqlTakeover, a.takeoverArgs(qs)
		if history {
			sql, args = sqlTakeoverHistory, append(args, election.HistoryKeep)
		}
		ctx, cancel := a.stmt()
		defer cancel()
		sent = boottime.Now()
		rows, err := a.conn().Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r takeoverResult
			if err := rows.Scan(&r.queue, &r.term, &r.waitMicros,
				&r.obs.ver, &r.obs.pid, &r.obs.row, &r.obs.ttl); err != nil {
				return err
			}
			results = append(results, r)
		}
		return rows.Err()
	})
	return results, sent, err
}

// tookOver acts on one queue's takeover row: without a term it waits out
// the previous lease; with one it hands the leadership to the first
// waiter, or returns it if that waiter withdrew during the statement
// (to be resigned).
func (a *actor) tookOver(q *queueState, r takeoverResult, sent, at time.Time) (withdrawn *leadership) {
	s := &a.b.s
	if r.term == nil {
		wait := time.Duration(0)
		if r.waitMicros != nil {
			wait = time.Duration(*r.waitMicros) * time.Microsecond
		}
		q.waitUntil = sent.Add(wait + time.Millisecond)
		a.observe(q, r.obs, at)
		if held, wake := q.prev.holding(0); held && wake.After(q.waitUntil) {
			q.waitUntil = wake
		}
		a.b.log.Info("lock taken; waiting out the previous leader's lease", "queue", q.name,
			"wait", boottime.Until(q.waitUntil).Round(time.Millisecond))
		return nil
	}
	q.prev = leaseSeen{}
	w := q.waiters[0]
	lead := newLeadership(a.b, q.name, q.key, *r.term, sent.Add(s.LeaseTTL))
	q.lead = lead
	q.waiters = q.waiters[1:]
	a.b.log.Info("elected", "queue", q.name, "term", *r.term)
	if w.withdrawn() {
		// Withdrawn during the statement: nobody would act on it.
		return lead
	}
	w.result <- campaignResult{lead: lead}
	return nil
}

// endStale ends session pid if it still holds the lock of one of qs and
// is stale (sqlLockHolders): a leader cut off behind a pooler or proxy,
// whose server session lingers, or a frozen one, or a follower frozen
// while it holds a lock. Only that pid, and only if it holds one of those
// locks, is terminated. This needs superuser, membership in
// pg_signal_backend, or the same role as the stale session.
func (a *actor) endStale(qs []*queueState, pid int32) {
	classids := make([]int64, len(qs))
	objids := make([]int64, len(qs))
	for i, q := range qs {
		classids[i], objids[i] = lockIDs(q.key)
	}
	ctx, cancel := a.stmt()
	defer cancel()
	sql := `SELECT pg_terminate_backend(s.pid`
	args := []any{classids, objids, pid}
	if a.sess.version >= 140000 {
		// Wait for the backend to exit, so the lock is free on return.
		sql += `, $4`
		args = append(args, min(a.b.s.StatementTimeout/2, time.Second).Milliseconds())
	}
	sql += `) FROM (
	SELECT DISTINCT lk.pid FROM pg_locks lk
	WHERE lk.locktype = 'advisory' AND lk.granted AND lk.objsubid = 1
	  AND lk.database = (SELECT oid FROM pg_database WHERE datname = current_database())
	  AND lk.pid = $3
	  AND (lk.classid::bigint, lk.objid::bigint) IN (SELECT * FROM unnest($1::bigint[], $2::bigint[]))
) s`
	var ended bool
	err := a.conn().QueryRow(ctx, sql, args...).Scan(&ended)
	first := qs[0].name
	switch {
	case err == nil && ended:
		a.b.log.Warn("ended stale session holding an expired lease", "queue", first, "queues", len(qs), "lock_pid", pid)
		for _, q := range qs {
			q.staleWarned = 0
		}
		a.tryNow = true
	case err == nil:
		a.b.log.Warn("stale session did not end in time", "queue", first, "queues", len(qs), "lock_pid", pid)
	case isNoRows(err):
		if warnOnce(qs, pid) {
			a.b.log.Debug("expired lease's session does not hold the lock", "queue", first, "queues", len(qs), "lock_pid", pid)
		}
	case isInsufficientPrivilege(err):
		if warnOnce(qs, pid) {
			a.b.log.Error("cannot end stale session: permission denied; grant pg_signal_backend to regent's role or use the same role on every replica",
				"queue", first, "queues", len(qs), "lock_pid", pid, "error", err.Error())
		}
	default:
		if a.check(err) != nil && a.lost != nil {
			return
		}
		a.b.log.Warn("cannot end stale session", "queue", first, "queues", len(qs), "lock_pid", pid,
			"error", scrub(err.Error(), a.b.pgcfg.Password))
	}
}

// warnOnce marks qs as warned about pid; it reports whether one of them
// had not been yet.
func warnOnce(qs []*queueState, pid int32) bool {
	fresh := false
	for _, q := range qs {
		if q.staleWarned != pid {
			q.staleWarned = pid
			fresh = true
		}
	}
	return fresh
}

// unlock frees q's advisory lock; announce also wakes the queue's
// followers.
func (a *actor) unlock(q *queueState, announce bool) {
	if !q.locked {
		return
	}
	ctx, cancel := a.stmt()
	defer cancel()
	var err error
	if announce {
		_, err = a.conn().Exec(ctx,
			`SELECT pg_advisory_unlock($1), pg_notify('`+NotifyChannel+`', $2) IS NOT NULL`,
			q.key, noticePayload(a.b.s.Cluster, q.name, kindReleased))
	} else {
		_, err = a.conn().Exec(ctx, `SELECT pg_advisory_unlock($1)`, q.key)
	}
	if err != nil {
		if a.check(err) != nil && a.lost != nil {
			return
		}
		// The lock stays held until a later unlock or the session's end;
		// keep it marked held so it is not taken twice.
		a.b.log.Warn("unlock failed", "queue", q.name, "error", scrub(err.Error(), a.b.pgcfg.Password))
		return
	}
	q.locked = false
	if len(q.waiters) > 0 {
		a.tryNow = true
	}
}

// reconcile frees the lock of each leadership that ended without the
// actor (its deadline passed), so that followers can take over once the
// lease expires on the server. A leadership being resigned is left to
// its resign command, queued behind (Resign closes Done first): that
// releases the record too, so that followers need not wait out the lease.
func (a *actor) reconcile() {
	for _, q := range a.queues {
		if q.lead != nil && q.lead.err() != nil && !q.lead.resigning() {
			q.lead = nil
			a.unlock(q, true)
			if a.lost != nil {
				return
			}
			a.forget(q)
		}
	}
}

func isNoRows(err error) bool {
	return errors.Is(err, pgx.ErrNoRows)
}

func isInsufficientPrivilege(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42501"
}
