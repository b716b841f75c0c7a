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
       elected_at, ` + leaseRenewedL + `, x.expires_at IS NULL
FROM regent_leaders l, LATERAL (SELECT ` + leaseExpiryL + ` AS expires_at) x
WHERE released IS NOT TRUE AND (x.expires_at IS NULL OR x.expires_at > now()) AND cluster = $1`

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

// leaderRow is one row of leaderColumns as scanned, every nullable
// column a pointer.
type leaderRow struct {
	queue                string
	node, host           *string
	pid                  *int32
	term                 *int64
	ptype, ptext         *string
	raw                  []byte
	electedAt, renewedAt *time.Time
	noExpiry             bool
}

// scanLeader reads one row of leaderColumns and decodes it (decodeLeaderRow).
func scanLeader(cluster string, rows pgx.Rows) (election.LeaderRecord, error) {
	var r leaderRow
	if err := rows.Scan(&r.queue, &r.node, &r.host, &r.pid, &r.term, &r.ptype, &r.ptext, &r.raw,
		&r.electedAt, &r.renewedAt, &r.noExpiry); err != nil {
		return election.LeaderRecord{}, err
	}
	return decodeLeaderRow(cluster, r), nil
}

// decodeLeaderRow decodes one row of leaderColumns. A row that cannot be
// decoded gives a record with Err set (wrapping election.ErrCorruptRecord
// and naming the queue) and every field that could be read.
func decodeLeaderRow(cluster string, r leaderRow) election.LeaderRecord {
	rec := election.LeaderRecord{Cluster: cluster, Queue: r.queue}
	var problems []error
	if r.node == nil || *r.node == "" {
		problems = append(problems, errors.New("empty node"))
	} else {
		rec.Node = *r.node
	}
	if r.host != nil {
		rec.Host = *r.host
	}
	if r.pid != nil {
		rec.PID = int(*r.pid)
	}
	if r.term == nil || *r.term < 1 {
		problems = append(problems, errors.New("term below 1"))
	} else {
		rec.Term = *r.term
	}
	switch {
	case r.electedAt == nil:
		problems = append(problems, errors.New("no election time"))
	case !encodable(*r.electedAt):
		problems = append(problems, fmt.Errorf("election time %s out of range", r.electedAt.UTC().Format(time.RFC3339)))
	default:
		rec.ElectedAt = *r.electedAt
	}
	if r.renewedAt != nil {
		if encodable(*r.renewedAt) {
			rec.RenewedAt = *r.renewedAt
		} else {
			problems = append(problems, fmt.Errorf("renewal time %s out of range", r.renewedAt.UTC().Format(time.RFC3339)))
		}
	}
	if r.noExpiry {
		problems = append(problems, errors.New("no lease expiry"))
	}
	payload, err := decodePayload(r.ptype, r.ptext, r.raw)
	if err != nil {
		problems = append(problems, err)
	}
	rec.Payload = payload
	if len(problems) > 0 {
		rec.Err = fmt.Errorf("%w: leader record of queue %q in cluster %q: %w",
			election.ErrCorruptRecord, r.queue, cluster, joinProblems(problems))
	}
	return rec
}

// memberRow is one row of selectMembers as scanned.
type memberRow struct {
	node         string
	host, role   *string
	pid          *int32
	ptype, ptext *string
	raw          []byte
	lastSeen     *time.Time
}

// scanMember reads one row of selectMembers and decodes it (decodeMemberRow).
func scanMember(cluster string, rows pgx.Rows) (election.MemberRecord, error) {
	var r memberRow
	if err := rows.Scan(&r.node, &r.host, &r.pid, &r.role, &r.ptype, &r.ptext, &r.raw, &r.lastSeen); err != nil {
		return election.MemberRecord{}, err
	}
	return decodeMemberRow(cluster, r), nil
}

// decodeMemberRow decodes one row of selectMembers, like decodeLeaderRow.
func decodeMemberRow(cluster string, r memberRow) election.MemberRecord {
	rec := election.MemberRecord{Cluster: cluster, Node: r.node}
	var problems []error
	if r.node == "" {
		problems = append(problems, errors.New("empty node"))
	}
	if r.host != nil {
		rec.Host = *r.host
	}
	if r.pid != nil {
		rec.PID = int(*r.pid)
	}
	if r.role == nil || *r.role == "" {
		problems = append(problems, errors.New("empty role"))
	} else {
		rec.Role = *r.role
	}
	if r.lastSeen != nil {
		if encodable(*r.lastSeen) {
			rec.LastSeen = *r.lastSeen
		} else {
			problems = append(problems, fmt.Errorf("last seen time %s out of range", r.lastSeen.UTC().Format(time.RFC3339)))
		}
	}
	payload, err := decodePayload(r.ptype, r.ptext, r.raw)
	if err != nil {
		problems = append(problems, err)
	}
	rec.Payload = payload
	if len(problems) > 0 {
		rec.Err = fmt.Errorf("%w: member record of node %q in cluster %q: %w",
			election.ErrCorruptRecord, r.node, cluster, joinProblems(problems))
	}
	return rec
}

// encodable reports whether t can be written as JSON (years 0 to 9999):
// PostgreSQL stores later times, which would make the status document
// unencodable.
func encodable(t time.Time) bool {
	_, err := t.MarshalJSON()
	return err == nil
}

// joinProblems makes one single-line error of a record's problems.
func joinProblems(problems []error) error {
	msgs := make([]string, len(problems))
	for i, p := range problems {
		msgs[i] = p.Error()
	}
	return errors.New(strings.Join(msgs, "; "))
}
