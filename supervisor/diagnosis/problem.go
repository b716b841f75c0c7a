package diagnosis

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/election"
)

// Problem severities. `status --check` maps them to its exit codes: any
// critical problem is 2, else any warning is 1; an info never changes the
// code.
const (
	Info     = "info"
	Warning  = "warning"
	Critical = "critical"
)

// Problem codes (README, "Status, health and metrics"). Each has one
// severity, but for CodeCorruptRecord: critical for a leader record that
// cannot be decoded (the queue's leader is unknown), a warning for a
// decodable record whose payload cannot be (only its config is unknown).
const (
	CodeNoLeader       = "no_leader"       // critical
	CodeSplitBrain     = "split_brain"     // critical
	CodeStaleWorker    = "stale_worker"    // critical
	CodeCorruptRecord  = "corrupt_record"  // critical, or warning (payload)
	CodeConfigConflict = "config_conflict" // warning
	CodeCrashLoop      = "crash_loop"      // warning
	CodeRSSLoop        = "rss_loop"        // warning
	CodeWedged         = "wedged"          // warning
)

// Problem is one anomaly found about a queue.
type Problem struct {
	Severity string `json:"severity"`
	Code     string `json:"code"`
	Message  string `json:"message"`
}

// graceSlack is added to the lease TTL in Grace: the records are read at
// different instants, and a replica rewrites its member record only after
// its role changed.
const graceSlack = time.Second

// Grace is how long after a queue's current term began a claim to lead
// it, or a live worker, of an older term is tolerated before it is a
// problem (split_brain, stale_worker): the lease TTL that the queue's
// leader publishes in its leader record (leaderConfig), plus one second.
//
// The leader's TTL, not the observer's own: a diagnosis depends only on
// the records and the time, so that every replica's metrics and log
// reports and a `regent status` run anywhere (which has no lease of its
// own) agree on the same records. The current term runs under the
// leader's lease; in a cluster whose replicas share one TTL, a deposed
// leader has fenced itself, and a dead one's records have expired, within
// that TTL of the new term. Replicas with another TTL are themselves
// reported (a lease_ttl config_conflict), and the grace follows the leader.
//
// Fallback: when the leader's config is unknown (no leader record, a
// corrupt record or payload, a lease_ttl missing, unparsable or not
// positive, as a foreign version may write), election.DefaultLeaseTTL is
// assumed: 11 s in all.
func Grace(leaderConfig *config.Published) time.Duration {
	ttl := election.DefaultLeaseTTL
	if leaderConfig != nil {
		if d, err := time.ParseDuration(leaderConfig.LeaseTTL); err == nil && d > 0 {
			ttl = d
		}
	}
	if ttl > math.MaxInt64-graceSlack {
		return math.MaxInt64
	}
	return ttl + graceSlack
}

// Claim is a member's claim to lead a queue.
type Claim struct {
	Node  string
	Term  int64
	Since time.Time
}

// SplitBrain returns the claims that make a split brain: every claim, if
// more than one remains after dropping those older than the newest claim
// while the newest began less than grace ago (a dead replica's lingering
// record, or a deposed leader still within its own deadline). It returns
// nil when there is at most one claimant.
func SplitBrain(claims []Claim, grace time.Duration, now time.Time) []Claim {
	if len(claims) < 2 {
		return nil
	}
	newest := claims[0]
	for _, c := range claims[1:] {
		if c.Term > newest.Term {
			newest = c
		}
	}
	var out []Claim
	for _, c := range claims {
		if c.Term < newest.Term && now.Sub(newest.Since) < grace {
			continue
		}
		out = append(out, c)
	}
	if len(out) < 2 {
		return nil
	}
	return out
}

// FormatClaims renders claims as "node (term N), ...".
func FormatClaims(cs []Claim) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%s (term %d)", c.Node, c.Term)
	}
	return strings.Join(parts, ", ")
}

// FormatConflicts renders conflicts as "field leader=X follower=Y; ...".
func FormatConflicts(cs []config.Conflict) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%s leader=%s follower=%s", c.Field, c.Leader, c.Follower)
	}
	return strings.Join(parts, "; ")
}
