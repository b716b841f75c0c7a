package pgbackend

import (
	"github.com/regentd/regent/internal/boottime"
)

// sqlRenew renews, in one statement, the lease of this session (its
// regent_sessions row, which every leader record it holds follows) and
// the member record's expiry: at most two row writes whatever the number
// of queues. It then reads (no write) the records this session holds of
// the given terms: a leadership missing from the result was released
// (ReleaseTerm) or taken: it is lost. A record of this session that
// follows it but is not among the given terms (a leadership that ended on
// its own deadline) gets the session's lease as it was before this
// renewal as its own, so that the renewal does not extend it. The lock pid
// checks make sure the statement runs in the session that holds the
// locks. The session row is written even with no term given: it is also
// the lease of the session itself, which tells other replicas that a
// session holding a lock it does not lead with (a follower waiting out
// the previous lease) is alive (sqlLockHolders). A written session row is
// announced on RenewalChannel.
const sqlRenew = `
WITH held AS (
	SELECT * FROM unnest($4::text[], $5::bigint[]) AS h(queue, term)
), old AS (
	SELECT expires_at FROM regent_sessions WHERE cluster = $1 AND pid = pg_backend_pid()
), s AS (
	INSERT INTO regent_sessions AS s (cluster, pid, node, renewed_at, expires_at)
	SELECT $1, pg_backend_pid(), $2, now(), now() + $3 * interval '1 microsecond'
	ON CONFLICT (cluster, pid) DO UPDATE SET
		node = excluded.node, renewed_at = excluded.renewed_at, expires_at = excluded.expires_at
	RETURNING pid, ` + sqlNotifyRenewal + `
), dropped AS (
	UPDATE regent_leaders l SET expires_at = COALESCE((SELECT expires_at FROM old), now())
	WHERE l.cluster = $1 AND l.lock_pid = pg_backend_pid() AND l.expires_at IS NULL
	  AND (l.queue, l.term) NOT IN (SELECT * FROM held)
	RETURNING 1
), m AS (
	UPDATE regent_members SET last_seen = now(), expires_at = now() + $3 * interval '1 microsecond'
	WHERE cluster = $1 AND node = $2 AND session_pid = pg_backend_pid()
	RETURNING node
)
SELECT l.queue, l.term FROM regent_leaders l
WHERE l.cluster = $1 AND l.node = $2 AND l.lock_pid = pg_backend_pid() AND l.released IS NOT TRUE
  AND l.expires_at IS NULL AND (l.queue, l.term) IN (SELECT * FROM held)
  AND EXISTS (SELECT 1 FROM s)`

// sqlNotifyRenewal, in the RETURNING list of a write of the session row
// aliased s (every returned row is computed, even when the statement
// reads none), announces the row's new version on RenewalChannel.
const sqlNotifyRenewal = `pg_notify('` + RenewalChannel + `',
		json_build_object('cluster', s.cluster, 'pid', s.pid, 'row', s.xmin::text)::text) IS NOT NULL AS notified`

// renew runs sqlRenew. ValidUntil of each renewed leadership becomes the
// send time plus the TTL: the server set the session's expires_at to its
// own now() plus the TTL, which cannot come before the send time.
func (a *actor) renew() {
	var names []string
	var terms []int64
	held := map[string]*queueState{}
	for _, q := range a.queues {
		if q.lead != nil && q.lead.err() == nil {
			names = append(names, q.name)
			terms = append(terms, q.lead.term)
			held[q.name] = q
		}
	}
	s := &a.b.s
	ctx, cancel := a.stmt()
	defer cancel()
	sent := boottime.Now()
	a.b.renewals.Add(1)
	rows, err := a.conn().Query(ctx, sqlRenew, s.Cluster, s.Node, s.LeaseTTL.Microseconds(), names, terms)
	renewed := map[string]int64{}
	if err == nil {
		for rows.Next() {
			var queue string
			var term int64
			if err = rows.Scan(&queue, &term); err != nil {
				break
			}
			renewed[queue] = term
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	if err != nil {
		if _ = a.check(err); a.lost == nil {
			// The deadline timers end the leaderships if this goes on.
			a.b.log.Warn("renewal failed", "error", scrub(err.Error(), a.b.pgcfg.Password))
		}
		return
	}
	a.b.renewedAt.Store(&sent)
	until := sent.Add(s.LeaseTTL)
	for name, q := range held {
		if term, ok := renewed[name]; ok && term == q.lead.term {
			q.lead.extend(until)
			continue
		}
		if q.lead.lose(errRecordGone) {
			a.b.log.Warn("leadership lost: record released or taken", "queue", name, "term", q.lead.term)
		}
		q.lead = nil
		a.unlock(q, true)
		if a.lost != nil {
			return
		}
		a.forget(q)
	}
}
