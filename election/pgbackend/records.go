package pgbackend

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regentd/regent/election"
)

// Live leader records: not released and not expired on the server's clock.
// A record whose expiry is missing is shown (and reported corrupt) rather
// than hidden.
const leaderColumns = `
SELECT queue, node, host, pid, term, jsonb_typeof(payload), payload::text, payload_raw,
       elected_at, renewed_at, expires_at IS NULL
FROM regent_leaders
WHERE released IS NOT TRUE AND (expires_at IS NULL OR expires_at > now()) AND cluster = $1`

const selectLeader = leaderColumns + ` AND queue = $2`

const selectLeaders = leaderColumns + ` ORDER BY queue`

// Live member records: not expired, and their session still exists (a
// member whose session was killed disappears at once, not at expiry).
const selectMembers = `
SELECT node, host, pid, role, jsonb_typeof(payload), payload::text, payload_raw, last_seen
FROM regent_members m
WHERE cluster = $1 AND expires_at > now()
  AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = m.session_pid)
ORDER BY node`

// scanLeader reads one row of leaderColumns. A row that cannot be decoded
// is returned with Err set (wrapping election.ErrCorruptRecord) and every
// field that could be read.
func scanLeader(cluster string, rows pgx.Rows) (election.LeaderRecord, error) {
	var (
		queue                string
		node, host           *string
		pid                  *int32
		term                 *int64
		ptype, ptext         *string
		raw                  []byte
		electedAt, renewedAt *time.Time
		noExpiry             bool
	)
	if err := rows.Scan(&queue, &node, &host, &pid, &term, &ptype, &ptext, &raw, &electedAt, &renewedAt, &noExpiry); err != nil {
		return election.LeaderRecord{}, err
	}
	rec := election.LeaderRecord{Cluster: cluster, Queue: queue}
	var problems []error
	if node == nil || *node == "" {
		problems = append(problems, errors.New("empty node"))
	} else {
		rec.Node = *node
	}
	if host != nil {
		rec.Host = *host
	}
	if pid != nil {
		rec.PID = int(*pid)
	}
	if term == nil || *term < 1 {
		problems = append(problems, errors.New("term below 1"))
	} else {
		rec.Term = *term
	}
	if electedAt == nil {
		problems = append(problems, errors.New("no election time"))
	} else {
		rec.ElectedAt = *electedAt
	}
	if renewedAt != nil {
		rec.RenewedAt = *renewedAt
	}
	if noExpiry {
		problems = append(problems, errors.New("no lease expiry"))
	}
	payload, err := decodePayload(ptype, ptext, raw)
	if err != nil {
		problems = append(problems, err)
	}
	rec.Payload = payload
	if len(problems) > 0 {
		rec.Err = fmt.Errorf("%w: leader record of queue %q in cluster %q: %w",
			election.ErrCorruptRecord, queue, cluster, joinProblems(problems))
	}
	return rec, nil
}

// scanMember reads one row of selectMembers, like scanLeader.
func scanMember(cluster string, rows pgx.Rows) (election.MemberRecord, error) {
	var (
		node         string
		host, role   *string
		pid          *int32
		ptype, ptext *string
		raw          []byte
		lastSeen     *time.Time
	)
	if err := rows.Scan(&node, &host, &pid, &role, &ptype, &ptext, &raw, &lastSeen); err != nil {
		return election.MemberRecord{}, err
	}
	rec := election.MemberRecord{Cluster: cluster, Node: node}
	var problems []error
	if node == "" {
		problems = append(problems, errors.New("empty node"))
	}
	if host != nil {
		rec.Host = *host
	}
	if pid != nil {
		rec.PID = int(*pid)
	}
	if role == nil || *role == "" {
		problems = append(problems, errors.New("empty role"))
	} else {
		rec.Role = *role
	}
	if lastSeen != nil {
		rec.LastSeen = *lastSeen
	}
	payload, err := decodePayload(ptype, ptext, raw)
	if err != nil {
		problems = append(problems, err)
	}
	rec.Payload = payload
	if len(problems) > 0 {
		rec.Err = fmt.Errorf("%w: member record of node %q in cluster %q: %w",
			election.ErrCorruptRecord, node, cluster, joinProblems(problems))
	}
	return rec, nil
}

// joinProblems makes one single-line error of a record's problems.
func joinProblems(problems []error) error {
	msgs := make([]string, len(problems))
	for i, p := range problems {
		msgs[i] = p.Error()
	}
	return errors.New(strings.Join(msgs, "; "))
}
