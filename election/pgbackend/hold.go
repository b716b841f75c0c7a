package pgbackend

import (
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/regentd/regent/internal/boottime"
)

// A follower's own clock (doc.go, "Waiting out an unclean end"): after an
// unclean end, a follower does not take over before the old leader's TTL
// has passed on its own clock since the last renewal it could have seen.

// leaseVersionL is the SQL expression of the version of the lease of the
// leader record aliased l, whose session row is joined as ls (LEFT JOIN
// regent_sessions ls ON ls.cluster = l.cluster AND ls.pid = l.lock_pid):
// it changes with every write that could extend the trust of the record's
// leader (a renewal or a takeover writes the session row: its xmin) and
// with the record itself (a new term; a lease of its own set). NULL when
// nothing holds the queue back: no record, or released (cleanly).
const leaseVersionL = `CASE WHEN l.cluster IS NOT NULL AND l.released IS NOT TRUE THEN
	COALESCE(l.term::text, '') || '/' || COALESCE(l.lock_pid::text, '') || '/' ||
	CASE WHEN l.expires_at IS NULL THEN 's' || COALESCE(ls.xmin::text, '') ELSE 'f' || l.xmin::text END END`

// leaseSeenL are the columns a follower reads of the lease of the leader
// record aliased l, session row ls (as for leaseVersionL), into a
// leaseObs: the version; the session the record follows; the version of
// that session's row (its xmin, as renewal notices carry it), NULL when
// the record has a lease of its own; and the session's TTL in
// microseconds as its leader wrote it (expires_at - renewed_at: both from
// one now(), so a step of the server's clock does not change it).
const leaseSeenL = leaseVersionL + `,
	l.lock_pid,
	CASE WHEN l.expires_at IS NULL THEN ls.xmin::text END,
	CEIL(EXTRACT(EPOCH FROM (ls.expires_at - ls.renewed_at)) * 1e6)::bigint`

// leaseObs is a lease as one statement read it (leaseSeenL; NULL
// as nil).
type leaseObs struct {
	ver *string
	pid *int32
	row *string
	ttl *int64 // microseconds
}

// leaseSeen is what a follower knows of the lease that holds a queue back.
type leaseSeen struct {
	// ver is the lease's version (leaseVersion); "" when nothing holds
	// the queue back.
	ver string
	// pid is the session whose lease row the record follows; row that
	// row's version, "" when the record has a lease of its own.
	pid int32
	row string
	// ttl is the lease's TTL as its leader recorded it, at least ours.
	ttl time.Duration
	// at is when this replica first knew of this version (boottime): the
	// statement's answer or the renewal notice that brought it, whichever
	// came first. Every renewal the old leader counted was sent before.
	at time.Time
}

// holding reports whether the old leader may still trust the lease seen,
// extra aside, on this replica's clock; if so, wake is when that ends, on
// the clock of the actor's timers (time.Now: a suspend of the host after
// this call makes the wake late, never early).
func (l leaseSeen) holding(extra time.Duration) (held bool, wake time.Time) {
	if l.ver == "" {
		return false, time.Time{}
	}
	left := boottime.Until(l.at.Add(l.ttl + extra))
	if left <= 0 {
		return false, time.Time{}
	}
	return true, boottime.Now().Add(left)
}

// heardRenewal is the latest renewal notice heard of one session.
type heardRenewal struct {
	row string
	at  time.Time // boottime of its receipt
}

// renewalKeep bounds how long a renewal notice is remembered: enough for
// a follower that reads the lease a little later (at its next try, or
// when the lease would be stale) to date the version it reads from the
// notice. Forgetting one only makes a follower wait longer.
func renewalKeep(ttl time.Duration) time.Duration {
	return max(4*ttl, time.Minute)
}

// notification handles a NOTIFY received on the lock connection.
func (a *actor) notification(n *pgconn.Notification) {
	if n.Channel == RenewalChannel {
		a.heardRenewal(n.Payload)
		return
	}
	a.handleNotice(n.Payload)
}

// heardRenewal remembers, per session, the version of its lease row that
// its latest renewal notice announced, and when it arrived: the renewal
// that wrote that version was sent before.
func (a *actor) heardRenewal(payload string) {
	n, ok := parseRenewal(payload)
	if !ok || n.Cluster != a.b.s.Cluster {
		return
	}
	now := boottime.Now()
	if a.renewals == nil {
		a.renewals = map[int32]heardRenewal{}
		a.renewalsPruned = now
	}
	a.renewals[n.PID] = heardRenewal{row: n.Row, at: now}
	if keep := renewalKeep(a.b.s.LeaseTTL); now.Sub(a.renewalsPruned) > keep {
		for pid, h := range a.renewals {
			if now.Sub(h.at) > keep {
				delete(a.renewals, pid)
			}
		}
		a.renewalsPruned = now
	}
}

// observe records the lease that holds q back as a statement answered
// before answered (boottime) read it. A version already known keeps the
// time it was first known; a new one dates from the answer, or from the
// renewal notice that announced it if that came first.
func (a *actor) observe(q *queueState, obs leaseObs, answered time.Time) {
	if obs.ver == nil {
		q.prev = leaseSeen{}
		return
	}
	if *obs.ver == q.prev.ver {
		return
	}
	seen := leaseSeen{ver: *obs.ver, ttl: a.b.s.LeaseTTL, at: answered}
	if obs.pid != nil {
		seen.pid = *obs.pid
	}
	if obs.row != nil {
		seen.row = *obs.row
	}
	if obs.ttl != nil {
		seen.ttl = max(seen.ttl, time.Duration(*obs.ttl)*time.Microsecond)
	}
	if h, ok := a.renewals[seen.pid]; ok && seen.row != "" && h.row == seen.row && h.at.Before(seen.at) {
		seen.at = h.at
	}
	q.prev = seen
}
