package pgbackend

import "encoding/json"

// Kinds of change announced on NotifyChannel.
const (
	kindElected  = "elected"  // a new leader record (new term)
	kindPayload  = "payload"  // a leader replaced its payload
	kindReleased = "released" // a leadership ended cleanly (resign, release, lost)
	kindMember   = "member"   // a member record was set or removed
	kindStepDown = "stepdown" // a step-down was requested
	kindControl  = "control"  // an operator record was written or deleted
)

// notice is the payload of a NOTIFY on NotifyChannel.
type notice struct {
	Cluster string `json:"cluster"`
	Queue   string `json:"queue,omitempty"`
	Kind    string `json:"kind"`
}

func noticePayload(cluster, queue, kind string) string {
	b, _ := json.Marshal(notice{Cluster: cluster, Queue: queue, Kind: kind})
	return string(b)
}

func parseNotice(payload string) (notice, bool) {
	var n notice
	if err := json.Unmarshal([]byte(payload), &n); err != nil || n.Kind == "" {
		return notice{}, false
	}
	return n, true
}

// renewal is the payload of a NOTIFY on RenewalChannel: the lease row of a
// lock session was written (a renewal or a takeover); Row is the new
// version of the row (its xmin).
type renewal struct {
	Cluster string `json:"cluster"`
	PID     int32  `json:"pid"`
	Row     string `json:"row"`
}

func parseRenewal(payload string) (renewal, bool) {
	var n renewal
	if err := json.Unmarshal([]byte(payload), &n); err != nil || n.PID == 0 || n.Row == "" {
		return renewal{}, false
	}
	return n, true
}
