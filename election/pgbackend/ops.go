package pgbackend

import (
	"fmt"

	"github.com/regentd/regent/election"
)

// publish replaces the payload of l's record, if l still holds it.
func (a *actor) publish(l *leadership, payload []byte) error {
	q := a.queues[l.queue]
	if q == nil || q.lead != l || l.err() != nil {
		return fmt.Errorf("%w: queue %q term %d", election.ErrNotLeader, l.queue, l.term)
	}
	s := &a.b.s
	jsonText, raw := encodePayload(payload)
	ctx, cancel := a.stmt()
	defer cancel()
	var n int
	err := a.conn().QueryRow(ctx, `
WITH u AS (
	UPDATE regent_leaders SET payload = $5::jsonb, payload_raw = $6
	WHERE cluster = $1 AND queue = $2 AND term = $3 AND node = $4
	  AND lock_pid = pg_backend_pid() AND released IS NOT TRUE
	RETURNING queue
)
SELECT count(*) FROM u WHERE pg_notify('`+NotifyChannel+`', $7) IS NOT NULL`,
		s.Cluster, l.queue, l.term, s.Node, jsonText, raw, noticePayload(s.Cluster, l.queue, kindPayload),
	).Scan(&n)
	if err != nil {
		err = a.check(err)
		if l.err() != nil {
			return fmt.Errorf("%w: queue %q term %d: %w", election.ErrNotLeader, l.queue, l.term, err)
		}
		return fmt.Errorf("pgbackend: publish: %w", err)
	}
	if n == 0 {
		if l.lose(errRecordGone) {
			a.b.log.Warn("leadership lost: record released or taken", "queue", l.queue, "term", l.term)
		}
		q.lead = nil
		a.unlock(q, true)
		return fmt.Errorf("%w: queue %q term %d: %w", election.ErrNotLeader, l.queue, l.term, errRecordGone)
	}
	return nil
}

// resign releases l's record (if it still holds it, even after a missed
// deadline), frees the lock and wakes followers, in one statement.
func (a *actor) resign(l *leadership) error {
	q := a.queues[l.queue]
	if q == nil || q.lead != l {
		// Already resigned, or lost and its lock freed.
		l.lose(errResigned)
		return nil
	}
	l.lose(errResigned)
	s := &a.b.s
	err := a.withHistory("resign", func(history bool) error {
		ctx, cancel := a.stmt()
		defer cancel()
		_, err := a.conn().Exec(ctx, withHistoryEnd(sqlResignWith, sqlResignSelect, "r", election.EndResign, history),
			s.Cluster, l.queue, l.term, s.Node, q.key, noticePayload(s.Cluster, l.queue, kindReleased))
		return err
	})
	if err != nil {
		if err = a.check(err); a.lost != nil {
			// The session's end freed the lock; the lease expires.
			return nil
		}
		// The lock is still held: leave it to reconcile-free later.
		q.lead = nil
		a.unlock(q, true)
		return fmt.Errorf("pgbackend: resign queue %q: %w", l.queue, err)
	}
	q.lead = nil
	q.locked = false
	a.b.log.Info("resigned", "queue", l.queue, "term", l.term)
	if len(q.waiters) > 0 {
		a.tryNow = true
	}
	a.forget(q)
	return nil
}

// sqlResignWith and sqlResignSelect make the statement of resign: it
// releases the record of one term (CTE r), wakes followers and frees the
// lock.
const (
	sqlResignWith = `
WITH r AS (
	UPDATE regent_leaders SET released = true, expires_at = LEAST(` + leaseExpiryT + `, now())
	WHERE cluster = $1 AND queue = $2 AND term = $3 AND node = $4
	  AND lock_pid = pg_backend_pid() AND released IS NOT TRUE
	RETURNING ` + historyReturning + `
)`
	sqlResignSelect = `
SELECT (SELECT count(*) FROM r WHERE pg_notify('` + NotifyChannel + `', $6) IS NOT NULL), pg_advisory_unlock($5)`
)

// setMember upserts this replica's member record, tied to this session.
func (a *actor) setMember(role string, payload []byte) error {
	s := &a.b.s
	jsonText, raw := encodePayload(payload)
	ctx, cancel := a.stmt()
	defer cancel()
	_, err := a.conn().Exec(ctx, `
WITH u AS (
	INSERT INTO regent_members AS m
		(cluster, node, host, pid, role, payload, payload_raw, last_seen, expires_at, session_pid)
	VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, now(), now() + $8 * interval '1 microsecond', pg_backend_pid())
	ON CONFLICT (cluster, node) DO UPDATE SET
		host = excluded.host, pid = excluded.pid, role = excluded.role,
		payload = excluded.payload, payload_raw = excluded.payload_raw,
		last_seen = excluded.last_seen, expires_at = excluded.expires_at,
		session_pid = excluded.session_pid
	RETURNING node
)
SELECT count(*) FROM u WHERE pg_notify('`+NotifyChannel+`', $9) IS NOT NULL`,
		s.Cluster, s.Node, s.Host, s.PID, role, jsonText, raw, s.LeaseTTL.Microseconds(),
		noticePayload(s.Cluster, "", kindMember))
	if err != nil {
		return fmt.Errorf("pgbackend: set member: %w", a.check(err))
	}
	return nil
}

// leader reads the live leader record of queue.
func (a *actor) leader(queue string) (election.LeaderRecord, error) {
	ctx, cancel := a.stmt()
	defer cancel()
	rows, err := a.conn().Query(ctx, selectLeader, a.b.s.Cluster, queue)
	if err != nil {
		return election.LeaderRecord{}, fmt.Errorf("pgbackend: read leader: %w", a.check(err))
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return election.LeaderRecord{}, fmt.Errorf("pgbackend: read leader: %w", a.check(err))
		}
		return election.LeaderRecord{}, fmt.Errorf("%w: queue %q", election.ErrNoLeader, queue)
	}
	rec, err := scanLeader(a.b.s.Cluster, rows)
	if err != nil {
		return election.LeaderRecord{}, fmt.Errorf("%w: leader record of queue %q in cluster %q: %w",
			election.ErrCorruptRecord, queue, a.b.s.Cluster, err)
	}
	if rec.Err != nil {
		return rec, rec.Err
	}
	return rec, nil
}

// leaders reads every live leader record of the cluster.
func (a *actor) leaders() ([]election.LeaderRecord, error) {
	ctx, cancel := a.stmt()
	defer cancel()
	rows, err := a.conn().Query(ctx, selectLeaders, a.b.s.Cluster)
	if err != nil {
		return nil, fmt.Errorf("pgbackend: read leaders: %w", a.check(err))
	}
	defer rows.Close()
	var out []election.LeaderRecord
	for rows.Next() {
		rec, err := scanLeader(a.b.s.Cluster, rows)
		if err != nil {
			rec.Cluster = a.b.s.Cluster
			rec.Err = fmt.Errorf("%w: leader record in cluster %q: %w", election.ErrCorruptRecord, a.b.s.Cluster, err)
		}
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgbackend: read leaders: %w", a.check(err))
	}
	return out, nil
}

// members reads every live member record of the cluster.
func (a *actor) members() ([]election.MemberRecord, error) {
	ctx, cancel := a.stmt()
	defer cancel()
	rows, err := a.conn().Query(ctx, selectMembers, a.b.s.Cluster)
	if err != nil {
		return nil, fmt.Errorf("pgbackend: read members: %w", a.check(err))
	}
	defer rows.Close()
	var out []election.MemberRecord
	for rows.Next() {
		rec, err := scanMember(a.b.s.Cluster, rows)
		if err != nil {
			rec.Cluster = a.b.s.Cluster
			rec.Err = fmt.Errorf("%w: member record in cluster %q: %w", election.ErrCorruptRecord, a.b.s.Cluster, err)
		}
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgbackend: read members: %w", a.check(err))
	}
	return out, nil
}

// releaseTerm marks queue's record released if it still holds term, and
// wakes followers.
func (a *actor) releaseTerm(queue string, term int64) error {
	s := &a.b.s
	var n int
	err := a.withHistory("release term", func(history bool) error {
		ctx, cancel := a.stmt()
		defer cancel()
		return a.conn().QueryRow(ctx, withHistoryEnd(sqlReleaseWith, sqlReleaseSelect, "r", election.EndReleased, history),
			s.Cluster, queue, term, noticePayload(s.Cluster, queue, kindReleased)).Scan(&n)
	})
	if err != nil {
		return fmt.Errorf("pgbackend: release term: %w", a.check(err))
	}
	if n > 0 {
		a.b.log.Info("term released", "queue", queue, "term", term)
	}
	return nil
}

// sqlReleaseWith and sqlReleaseSelect make the statement of releaseTerm:
// it releases the record of one term (CTE r) and wakes followers.
const (
	sqlReleaseWith = `
WITH r AS (
	UPDATE regent_leaders SET released = true, expires_at = LEAST(` + leaseExpiryT + `, now())
	WHERE cluster = $1 AND queue = $2 AND term = $3 AND released IS NOT TRUE
	RETURNING ` + historyReturning + `
)`
	sqlReleaseSelect = `
SELECT count(*) FROM r WHERE pg_notify('` + NotifyChannel + `', $4) IS NOT NULL`
)

// requestStepDown records a step-down request against the current term.
func (a *actor) requestStepDown(queue, to string) error {
	s := &a.b.s
	ctx, cancel := a.stmt()
	defer cancel()
	var n int
	err := a.conn().QueryRow(ctx, `
WITH r AS (
	INSERT INTO regent_stepdowns AS sd (cluster, queue, to_node, term, requested_at, hold_until)
	SELECT cluster, queue, $3, term, now(), now() + $4 * interval '1 microsecond'
	FROM regent_leaders
	WHERE cluster = $1 AND queue = $2 AND released IS NOT TRUE AND `+leaseExpiryT+` > now() AND term >= 1
	ON CONFLICT (cluster, queue) DO UPDATE SET
		to_node = excluded.to_node, term = excluded.term,
		requested_at = excluded.requested_at, hold_until = excluded.hold_until
	RETURNING queue
)
SELECT count(*) FROM r WHERE pg_notify('`+NotifyChannel+`', $5) IS NOT NULL`,
		s.Cluster, queue, to, s.stepDownHold.Microseconds(), noticePayload(s.Cluster, queue, kindStepDown)).Scan(&n)
	if err != nil {
		return fmt.Errorf("pgbackend: request step-down: %w", a.check(err))
	}
	if n == 0 {
		return fmt.Errorf("%w: queue %q", election.ErrNoLeader, queue)
	}
	return nil
}

// stepDownRequest reads the request pending against queue's current term.
func (a *actor) stepDownRequest(queue string) (election.StepDownRequest, bool, error) {
	ctx, cancel := a.stmt()
	defer cancel()
	req := election.StepDownRequest{Queue: queue}
	err := a.conn().QueryRow(ctx, `
SELECT s.to_node, s.term, s.requested_at
FROM regent_stepdowns s
JOIN regent_leaders l ON l.cluster = s.cluster AND l.queue = s.queue AND l.term = s.term
WHERE s.cluster = $1 AND s.queue = $2 AND l.released IS NOT TRUE AND `+leaseExpiryL+` > now()`,
		a.b.s.Cluster, queue).Scan(&req.To, &req.Term, &req.RequestedAt)
	if isNoRows(err) {
		return election.StepDownRequest{}, false, nil
	}
	if err != nil {
		return election.StepDownRequest{}, false, fmt.Errorf("pgbackend: read step-down request: %w", a.check(err))
	}
	return req, true, nil
}

// stepDownRequests reads every pending step-down request of the cluster.
func (a *actor) stepDownRequests() ([]election.StepDownRequest, error) {
	ctx, cancel := a.stmt()
	defer cancel()
	rows, err := a.conn().Query(ctx, `
SELECT s.queue, s.to_node, s.term, s.requested_at
FROM regent_stepdowns s
JOIN regent_leaders l ON l.cluster = s.cluster AND l.queue = s.queue AND l.term = s.term
WHERE s.cluster = $1 AND l.released IS NOT TRUE AND `+leaseExpiryL+` > now()`, a.b.s.Cluster)
	if err != nil {
		return nil, fmt.Errorf("pgbackend: read step-down requests: %w", a.check(err))
	}
	defer rows.Close()
	var out []election.StepDownRequest
	for rows.Next() {
		var r election.StepDownRequest
		if err := rows.Scan(&r.Queue, &r.To, &r.Term, &r.RequestedAt); err != nil {
			return nil, fmt.Errorf("pgbackend: read step-down requests: %w", a.check(err))
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgbackend: read step-down requests: %w", a.check(err))
	}
	return out, nil
}
