package pgbackend

import (
	"time"
)

// sqlRenew extends, in one statement, the lease of every queue this
// session leads and the member record's expiry. A leadership missing from
// the result was released (ReleaseTerm) or taken: it is lost. The lock pid
// check makes sure the statement runs in the session that holds the locks.
const sqlRenew = `
WITH r AS (
	UPDATE regent_leaders SET renewed_at = now(), expires_at = now() + $3 * interval '1 microsecond'
	WHERE cluster = $1 AND node = $2 AND lock_pid = pg_backend_pid() AND released IS NOT TRUE
	  AND (queue, term) IN (SELECT * FROM unnest($4::text[], $5::bigint[]))
	RETURNING queue, term
), m AS (
	UPDATE regent_members SET last_seen = now(), expires_at = now() + $3 * interval '1 microsecond'
	WHERE cluster = $1 AND node = $2 AND session_pid = pg_backend_pid()
	RETURNING node
)
SELECT queue, term FROM r`

// renew runs sqlRenew. ValidUntil of each renewed leadership becomes the
// send time plus the TTL: the server set expires_at to its own now() plus
// the TTL, which cannot come before the send time.
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
	sent := time.Now()
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
