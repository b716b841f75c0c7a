package pgbackend

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regentd/regent/election"

	"github.com/regentd/regent/internal/boottime"
)

// History (see doc.go): the table regent_history holds one row per term
// of a queue: node, host, started_at, ended_at, end_reason (NULL while the
// term lasts). Rows are written only by the statements that change
// leadership, in the same statement, so in the same transaction:
//
//   - takeover inserts the new term's row, closes the previous term's row
//     if nobody did (released: "resign"; else "expiry", ended when its
//     lease ran out) and deletes the rows beyond the newest HistoryKeep;
//   - resign and Close close the row as "resign", ReleaseTerm as
//     "released", at the server's now();
//   - a leader whose session ends while it still trusts its lease (an
//     administrator's pg_terminate_backend, a server restart) closes its
//     rows as "lost" through a short-lived connection (noteLost).
//
// A statement whose history part fails is run again without it (logged):
// history never blocks an election. Nothing is written per renewal.

// historyReturning is what the release statements return of each
// released record, for historyEnd.
const historyReturning = `queue, term, node, host, elected_at`

// historyEnd is a CTE, to put after the others, that closes with reason
// the history row of each record the CTE from returned (historyReturning),
// creating the row if it is missing. A row already closed is left alone.
// $1 must be the cluster.
func historyEnd(from, reason string) string {
	return `, hist_end AS (
	INSERT INTO regent_history AS h (cluster, queue, term, node, host, started_at, ended_at, end_reason)
	SELECT $1, x.queue, x.term, x.node, x.host, x.elected_at, now(), '` + reason + `' FROM ` + from + ` AS x
	ON CONFLICT (cluster, queue, term) DO UPDATE SET ended_at = excluded.ended_at, end_reason = excluded.end_reason
	WHERE h.end_reason IS NULL
)`
}

// withHistoryEnd is the release statement made of with and sel, with the
// historyEnd of CTE from if history is set.
func withHistoryEnd(with, sel, from, reason string, history bool) string {
	if !history {
		return with + sel
	}
	return with + historyEnd(from, reason) + sel
}

// sqlTakeoverHistory is sqlTakeover that also, for each queue it records
// a new leader of: closes the previous term's history row if nobody did
// (released: resign; else the lease ran out: expiry, at its expires_at),
// opens the new term's row and trims the rows beyond the newest $11 (terms
// of a queue are consecutive). prev reads the records as they were before
// up changed them (every CTE sees the same snapshot).
const sqlTakeoverHistory = `
WITH ` + sqlTakeoverWant + `, prev AS (
	SELECT l.queue, l.term, l.node, l.host, l.elected_at, ` + leaseExpiryL + ` AS expires_at, l.released
	FROM regent_leaders l JOIN want w ON w.queue = l.queue WHERE l.cluster = $1
), ` + sqlTakeoverUp + `, hist_prev AS (
	INSERT INTO regent_history AS h (cluster, queue, term, node, host, started_at, ended_at, end_reason)
	SELECT $1, prev.queue, prev.term, prev.node, prev.host, prev.elected_at,
	       LEAST(COALESCE(prev.expires_at, now()), now()),
	       CASE WHEN prev.released IS TRUE THEN '` + election.EndResign + `' ELSE '` + election.EndExpiry + `' END
	FROM prev JOIN up ON up.queue = prev.queue
	WHERE prev.term >= 1 AND prev.term < up.term
	ON CONFLICT (cluster, queue, term) DO UPDATE SET ended_at = excluded.ended_at, end_reason = excluded.end_reason
	WHERE h.end_reason IS NULL
), hist_new AS (
	INSERT INTO regent_history AS h (cluster, queue, term, node, host, started_at)
	SELECT $1, up.queue, up.term, $3, $4, now() FROM up
	ON CONFLICT (cluster, queue, term) DO UPDATE SET node = excluded.node, host = excluded.host,
		started_at = excluded.started_at, ended_at = NULL, end_reason = NULL
), hist_trim AS (
	DELETE FROM regent_history h USING up
	WHERE h.cluster = $1 AND h.queue = up.queue AND (h.term <= up.term - $11::bigint OR h.term > up.term)
)` + sqlTakeoverSelect

// withHistory runs run with the statement that also writes the history
// (history true). If that fails while the session lives on, it logs the
// failure and runs the plain statement: history never blocks an
// election. what names the statement in the log.
func (a *actor) withHistory(what string, run func(history bool) error) error {
	err := run(true)
	if err == nil {
		return nil
	}
	if _ = a.check(err); a.lost != nil || a.sess == nil {
		return err
	}
	a.b.log.Warn("cannot write the leadership history; going on without it", "statement", what,
		"error", scrub(err.Error(), a.b.pgcfg.Password))
	return run(false)
}

// lostLead is a leadership still trusted when the session ended.
type lostLead struct {
	queue      string
	term       int64
	validUntil time.Time
}

// trustedLeads returns the leaderships held and not yet lost.
func (a *actor) trustedLeads() []lostLead {
	var out []lostLead
	for _, q := range a.queues {
		if q.lead != nil && q.lead.err() == nil {
			out = append(out, lostLead{queue: q.name, term: q.lead.term, validUntil: q.lead.ValidUntil()})
		}
	}
	return out
}

// sqlNoteLost closes as lost the history rows of the given terms whose
// records the ended session ($2) still held with an unexpired lease.
const sqlNoteLost = `
INSERT INTO regent_history AS h (cluster, queue, term, node, host, started_at, ended_at, end_reason)
SELECT l.cluster, l.queue, l.term, l.node, l.host, l.elected_at, now(), '` + election.EndLost + `'
FROM regent_leaders l
JOIN unnest($3::text[], $4::bigint[]) AS x(queue, term) ON l.queue = x.queue AND l.term = x.term
WHERE l.cluster = $1 AND l.lock_pid = $2 AND l.released IS NOT TRUE AND ` + leaseExpiryL + ` > now()
ON CONFLICT (cluster, queue, term) DO UPDATE SET ended_at = excluded.ended_at, end_reason = excluded.end_reason
WHERE h.end_reason IS NULL`

// noteLost records, after the session ended, that the leaderships it
// still trusted were lost from outside (election.EndLost): the session
// ended while their leases ran. A follower cannot tell this from a leader
// that died (it sees the lock freed early either way) and records an
// expiry, so the survivor says it itself, through a short-lived
// connection, bounded by the latest ValidUntil (past it the lease may
// have run out, and the row no longer qualifies) and by Close. It runs
// on the actor goroutine after Done is closed, so it delays no one's
// reaction to the loss. Failures are logged.
func (a *actor) noteLost() {
	leads := a.lostLeads
	a.lostLeads = nil
	if len(leads) == 0 || a.b.s.ReadOnly {
		return
	}
	var queues []string
	var terms []int64
	until := time.Time{}
	for _, l := range leads {
		queues = append(queues, l.queue)
		terms = append(terms, l.term)
		if l.validUntil.After(until) {
			until = l.validUntil
		}
	}
	if !boottime.Now().Before(until) {
		return
	}
	ctx, cancel := context.WithDeadline(a.ctx, until)
	defer cancel()
	err := a.noteLostWith(ctx, queues, terms)
	if err != nil && a.ctx.Err() == nil {
		a.b.log.Warn("cannot record the lost leaderships in the history", "queues", queues,
			"error", scrub(err.Error(), a.b.pgcfg.Password))
	}
}

// noteLostWith connects and runs sqlNoteLost.
func (a *actor) noteLostWith(ctx context.Context, queues []string, terms []int64) error {
	conn, err := pgx.ConnectConfig(ctx, a.b.pgcfg)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	tag, err := conn.Exec(ctx, sqlNoteLost, a.b.s.Cluster, a.b.LockPID(), queues, terms)
	if err != nil {
		return err
	}
	a.b.log.Debug("lost leaderships recorded in the history", "queues", queues, "recorded", tag.RowsAffected())
	return nil
}

// sqlHistory reads the newest terms of a queue ($3 of them; all if NULL):
// its history rows, with the record of the same term if it is the latest,
// and the latest record itself if its row is missing (written without
// history). A row that is still open is judged by the record: released,
// or its lease expired, it has ended.
const sqlHistory = `
SELECT h.term, h.node, h.host, h.started_at, h.ended_at, h.end_reason,
       l.term IS NOT NULL, l.released, x.expires_at, x.expires_at <= now()
FROM regent_history h
LEFT JOIN regent_leaders l ON l.cluster = h.cluster AND l.queue = h.queue AND l.term = h.term
LEFT JOIN LATERAL (SELECT ` + leaseExpiryL + ` AS expires_at) x ON true
WHERE h.cluster = $1 AND h.queue = $2
UNION ALL
SELECT l.term, l.node, l.host, l.elected_at, NULL, NULL,
       true, l.released, x.expires_at, x.expires_at <= now()
FROM regent_leaders l, LATERAL (SELECT ` + leaseExpiryL + ` AS expires_at) x
WHERE l.cluster = $1 AND l.queue = $2 AND l.term >= 1
  AND NOT EXISTS (SELECT 1 FROM regent_history h WHERE h.cluster = $1 AND h.queue = $2 AND h.term = l.term)
ORDER BY 1 DESC
LIMIT $3`

// History returns the last terms of queue, newest first, at most limit of
// them (all that are kept, HistoryKeep at least, when limit <= 0). A term
// whose row is still open is reported as lasting while its record holds
// an unexpired, unreleased lease; once that lease has expired it is
// reported as ended by expiry at the lease's expiry (the next leader
// confirms it), once released without a recorded reason as resigned, and
// a term superseded without its end recorded as expired at an unknown
// time. Undecodable rows are skipped and logged. Works on a read-only
// backend. Cancelling ctx stops waiting.
func (b *Backend) History(ctx context.Context, queue string, limit int) ([]election.HistoryEntry, error) {
	var out []election.HistoryEntry
	err := b.act.call(ctx, func(a *actor) error {
		var err error
		out, err = a.history(queue, limit)
		return err
	})
	if err != nil {
		// out may still be written by the actor when ctx ended first.
		return nil, err
	}
	return out, nil
}

// history runs sqlHistory.
func (a *actor) history(queue string, limit int) ([]election.HistoryEntry, error) {
	var lim *int64
	if limit > 0 {
		n := int64(limit)
		lim = &n
	}
	ctx, cancel := a.stmt()
	defer cancel()
	rows, err := a.conn().Query(ctx, sqlHistory, a.b.s.Cluster, queue, lim)
	if err != nil {
		return nil, fmt.Errorf("pgbackend: read history: %w", a.check(err))
	}
	defer rows.Close()
	var out []election.HistoryEntry
	for rows.Next() {
		var r historyRow
		if err := rows.Scan(&r.term, &r.node, &r.host, &r.from, &r.to, &r.reason,
			&r.latest, &r.released, &r.expiresAt, &r.expired); err != nil {
			return nil, fmt.Errorf("pgbackend: read history: %w", err)
		}
		e, err := r.entry(a.b.s.Cluster, queue)
		if err != nil {
			a.b.log.Warn("skipping an undecodable history entry", "queue", queue, "term", r.term, "error", err)
			continue
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgbackend: read history: %w", a.check(err))
	}
	return out, nil
}

// historyRow is one row of sqlHistory.
type historyRow struct {
	term       int64
	node, host *string
	from, to   *time.Time
	reason     *string
	latest     bool
	released   *bool
	expiresAt  *time.Time
	expired    *bool
}

// entry decodes the row; an error wraps election.ErrCorruptRecord.
func (r historyRow) entry(cluster, queue string) (election.HistoryEntry, error) {
	e := election.HistoryEntry{Queue: queue, Term: r.term}
	bad := func(why string) error {
		return fmt.Errorf("%w: history of queue %q term %d in cluster %q: %s",
			election.ErrCorruptRecord, queue, r.term, cluster, why)
	}
	if r.node == nil || *r.node == "" {
		return e, bad("empty node")
	}
	e.Node = *r.node
	for _, t := range []*time.Time{r.from, r.to, r.expiresAt} {
		if t != nil && !encodable(*t) {
			return e, bad(fmt.Sprintf("time %s out of range", t.UTC().Format(time.RFC3339)))
		}
	}
	if r.host != nil {
		e.Host = *r.host
	}
	if r.from != nil {
		e.From = *r.from
	}
	if r.reason != nil {
		switch *r.reason {
		case election.EndResign, election.EndReleased, election.EndExpiry, election.EndLost:
		default:
			return e, bad(fmt.Sprintf("unknown end reason %q", *r.reason))
		}
		e.EndReason = *r.reason
		if r.to != nil {
			e.To = *r.to
		}
		return e, nil
	}
	switch {
	case !r.latest:
		// Superseded, its end never recorded.
		e.EndReason = election.EndExpiry
	case r.released != nil && *r.released:
		e.EndReason = election.EndResign
		if r.expiresAt != nil {
			e.To = *r.expiresAt // set to the release time
		}
	case r.expired != nil && *r.expired:
		e.EndReason = election.EndExpiry
		if r.expiresAt != nil {
			e.To = *r.expiresAt
		}
	}
	return e, nil
}
