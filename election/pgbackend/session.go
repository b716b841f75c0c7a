package pgbackend

import (
	"context"
	"fmt"
)

// Sessions (schema version 3): the liveness of a leader record is the
// lease of the session that holds it, one row per lock session in
// regent_sessions (cluster, pid: the server pid of the lock connection)
// with renewed_at and expires_at. A leader record whose own expires_at is
// NULL follows its session's row (joined on cluster and lock_pid); a
// non-NULL expires_at is a fixed lease: set when the record is released,
// when the session stops covering it (a leadership that ended on its own
// deadline), or by a replica of an older schema. So a renewal writes one
// session row whatever the number of queues; leader rows are written only
// when leadership changes.

// leaseExpiryL is the SQL expression of the lease expiry of the leader
// record aliased l: its own expires_at, else its session's.
// leaseExpiryT is the same for the table regent_leaders unaliased.
const (
	leaseExpiryL = `COALESCE(l.expires_at, (SELECT s.expires_at FROM regent_sessions s
	WHERE s.cluster = l.cluster AND s.pid = l.lock_pid))`
	leaseExpiryT = `COALESCE(regent_leaders.expires_at, (SELECT s.expires_at FROM regent_sessions s
	WHERE s.cluster = regent_leaders.cluster AND s.pid = regent_leaders.lock_pid))`
)

// leaseRenewedL is the SQL expression of the last renewal time of the
// leader record aliased l: its session's, while the record follows it.
const leaseRenewedL = `CASE WHEN l.expires_at IS NULL THEN (SELECT s.renewed_at FROM regent_sessions s
	WHERE s.cluster = l.cluster AND s.pid = l.lock_pid) END`

// sqlRegisterSession runs once per lock session, before it takes a lock:
// a session row of this pid, and the records that follow it, belong to an
// earlier session that had the same pid (a pid is unique among live
// sessions, not over time or across a failover): those records get the
// old session's expiry as their own (now if the row is missing) so that
// this session does not revive them, and the row is replaced by this
// session's, with a fresh lease ($3: the TTL in microseconds) that every
// renewal moves, leader or not. Session rows expired for over an hour and
// followed by no record are removed.
const sqlRegisterSession = `
WITH old AS (
	SELECT expires_at FROM regent_sessions WHERE cluster = $1 AND pid = pg_backend_pid()
), frozen AS (
	UPDATE regent_leaders l SET expires_at = COALESCE((SELECT expires_at FROM old), now())
	WHERE l.cluster = $1 AND l.lock_pid = pg_backend_pid() AND l.expires_at IS NULL
	RETURNING 1
), mine AS (
	INSERT INTO regent_sessions AS s (cluster, pid, node, renewed_at, expires_at)
	VALUES ($1, pg_backend_pid(), $2, now(), now() + $3 * interval '1 microsecond')
	ON CONFLICT (cluster, pid) DO UPDATE SET
		node = excluded.node, renewed_at = excluded.renewed_at, expires_at = excluded.expires_at
	RETURNING pid
), gone AS (
	DELETE FROM regent_sessions s
	WHERE s.cluster = $1 AND s.pid <> pg_backend_pid() AND s.expires_at < now() - interval '1 hour'
	  AND NOT EXISTS (SELECT 1 FROM regent_leaders l
	                  WHERE l.cluster = s.cluster AND l.lock_pid = s.pid AND l.expires_at IS NULL)
	RETURNING 1
)
SELECT (SELECT count(*) FROM frozen), (SELECT count(*) FROM gone)`

// registerSession runs sqlRegisterSession on the lock connection.
func (b *Backend) registerSession(ctx context.Context, sess *session) error {
	ctx, cancel := context.WithTimeout(ctx, b.s.clientStatementTimeout)
	defer cancel()
	var frozen, gone int64
	if err := sess.conn.QueryRow(ctx, sqlRegisterSession, b.s.Cluster, b.s.Node,
		b.s.LeaseTTL.Microseconds()).Scan(&frozen, &gone); err != nil {
		if isFatal(sess.conn, err) {
			return b.unavailable("register session", err)
		}
		return fmt.Errorf("pgbackend: register session: %s", scrub(err.Error(), b.pgcfg.Password))
	}
	if frozen > 0 {
		b.log.Debug("records of an earlier session with this pid fixed to its lease", "records", frozen)
	}
	return nil
}
