package diagnosis

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
	// Configs holds each distinct queue config once; a queue refers to
	// its entry by ConfigRef. Most queues of a replica share one config,
	// and writing it per queue made the record of a replica with 5,000
	// queues 2.9 MB, over etcd's request size limit.
	Configs []config.Published `json:"configs,omitempty"`
	// HTTPAddr is the address this replica's HTTP server actually listens
	// on (empty: disabled), for probes and scrapers that find it through
	// status.
	HTTPAddr string `json:"http_addr,omitempty"`
	// Features lists the operator features this replica carries out
	// (control.Features); a replica of an older version lists none.
	Features []string `json:"features,omitempty"`
	// Drained is true while this replica obeys a drain of its node.
	Drained bool `json:"drained,omitempty"`
}

// MemberQueue is one replica's view of one of its queues.
type MemberQueue struct {
	// Role is "leader" or "follower".
	Role string `json:"role"`
	// Term is the term this replica leads, when leader.
	Term  int64     `json:"term,omitempty"`
	Since time.Time `json:"since,omitempty"`
	// Config is the queue's config on this replica. On the wire it is
	// either inline or, as written by NewMemberPayload, a reference into
	// MemberPayload.Configs that DecodeMemberPayload resolves.
	Config    config.Published `json:"config,omitzero"`
	ConfigRef *int             `json:"config_ref,omitempty"`
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
	// Paused is true on a leader that obeys a pause of the queue: it
	// leads and runs no worker.
	Paused bool `json:"paused,omitempty"`
	// RestartID is the last restart request (control.Restart.ID) this
	// leader carried out, or found done by its term's start.
	RestartID string `json:"restart_id,omitempty"`
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

// NewMemberPayload returns the payload describing queues, each config
// written once in Configs and referred to by the queues that share it.
func NewMemberPayload(version string, queues map[string]MemberQueue) MemberPayload {
	p := MemberPayload{Version: version, Queues: make(map[string]MemberQueue, len(queues))}
	index := map[string]int{}
	for name, mq := range queues {
		key, err := json.Marshal(mq.Config)
		if err != nil {
			// Not reached: a Published always encodes. Keep it inline.
			p.Queues[name] = mq
			continue
		}
		i, ok := index[string(key)]
		if !ok {
			i = len(p.Configs)
			index[string(key)] = i
			p.Configs = append(p.Configs, mq.Config)
		}
		mq.Config = config.Published{}
		mq.ConfigRef = &i
		p.Queues[name] = mq
	}
	return p
}

// DecodeMemberPayload decodes a member record payload, resolving config
// references.
func DecodeMemberPayload(b []byte) (MemberPayload, error) {
	var p MemberPayload
	if len(b) == 0 {
		return p, fmt.Errorf("empty member payload")
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return MemberPayload{}, fmt.Errorf("member payload: %w", err)
	}
	for name, mq := range p.Queues {
		if mq.ConfigRef == nil {
			continue
		}
		i := *mq.ConfigRef
		if i < 0 || i >= len(p.Configs) {
			return MemberPayload{}, fmt.Errorf("member payload: queue %q refers to config %d of %d", name, i, len(p.Configs))
		}
		mq.Config = p.Configs[i]
		mq.ConfigRef = nil
		p.Queues[name] = mq
	}
	return p, nil
}
