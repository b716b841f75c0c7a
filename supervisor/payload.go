package supervisor

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/regentd/regent/config"
)

// LeaderPayload is the payload a leader publishes in its leader record.
type LeaderPayload struct {
	Version string           `json:"version"`
	Config  config.Published `json:"config"`
}

// MemberPayload is the payload of a replica's member record.
type MemberPayload struct {
	Version string                 `json:"version"`
	Queues  map[string]MemberQueue `json:"queues"`
}

// MemberQueue is one replica's view of one of its queues.
type MemberQueue struct {
	// Role is "leader" or "follower".
	Role string `json:"role"`
	// Term is the term this replica leads, when leader.
	Term   int64            `json:"term,omitempty"`
	Since  time.Time        `json:"since,omitempty"`
	Config config.Published `json:"config"`
	// Conflicts lists the fields where this replica's config differs from
	// the leader's.
	Conflicts []config.Conflict `json:"conflicts,omitempty"`
	// WorkerTerms lists the terms of this replica's live worker pools
	// (normally empty on a follower, the led term on a leader).
	WorkerTerms []int64 `json:"worker_terms,omitempty"`
	// Workers describes the leader's workers.
	Workers []WorkerInfo `json:"workers,omitempty"`
	// Degraded is true when the workers crash-loop.
	Degraded bool `json:"degraded,omitempty"`
}

// WorkerInfo is the published state of one worker.
type WorkerInfo struct {
	Index    int    `json:"index"`
	PID      int    `json:"pid"`
	State    string `json:"state"`
	Restarts int    `json:"restarts"`
	Crashes  int    `json:"crashes"`
	RSSBytes uint64 `json:"rss_bytes"`
	RSSLoop  bool   `json:"rss_loop,omitempty"`
	Wedged   bool   `json:"wedged,omitempty"`
}

// DecodeLeaderPayload decodes a leader record payload; hostile or foreign
// input gives an error, never a panic.
func DecodeLeaderPayload(b []byte) (LeaderPayload, error) {
	var p LeaderPayload
	if len(b) == 0 {
		return p, fmt.Errorf("empty leader payload")
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return LeaderPayload{}, fmt.Errorf("leader payload: %w", err)
	}
	return p, nil
}

// DecodeMemberPayload decodes a member record payload.
func DecodeMemberPayload(b []byte) (MemberPayload, error) {
	var p MemberPayload
	if len(b) == 0 {
		return p, fmt.Errorf("empty member payload")
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return MemberPayload{}, fmt.Errorf("member payload: %w", err)
	}
	return p, nil
}
