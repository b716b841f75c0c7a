package etcdbackend

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/regentd/regent/election"
)

// leaderValue is the stored value of a leader key: election.LeaderRecord
// without Term (the key's CreateRevision) and RenewedAt (estimated from
// the lease when read). Cluster and Queue are stored for humans reading
// the key with etcdctl; readers take them from the key itself.
type leaderValue struct {
	Cluster   string    `json:"cluster"`
	Queue     string    `json:"queue"`
	Node      string    `json:"node"`
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	ElectedAt time.Time `json:"elected_at"`
	Payload   []byte    `json:"payload,omitempty"`
}

// termValue is the stored value of a queue's term key. Host and
// ElectedAt make it the history entry of the latest term (see history.go).
type termValue struct {
	Node string `json:"node"`
	// Lease is the lease the leadership was held under.
	Lease int64 `json:"lease"`
	// TTLMillis is that lease's TTL: how long after its last renewal the
	// leader may still trust its leadership.
	TTLMillis int64     `json:"ttl_ms"`
	Host      string    `json:"host,omitempty"`
	ElectedAt time.Time `json:"elected_at,omitzero"`
}

// releasedValue is the stored value of a queue's released key. Reason
// (election.EndResign, election.EndReleased, or election.EndExpiry for a
// leadership given up when its trust window ran out) and At say how and
// when the term ended, for its history entry; values written before they
// existed lack them.
type releasedValue struct {
	Term   int64     `json:"term"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at,omitzero"`
}

// memberValue is the stored value of a member key: election.MemberRecord
// without the fields taken from the key (Cluster, Node).
type memberValue struct {
	Host     string    `json:"host"`
	PID      int       `json:"pid"`
	Role     string    `json:"role"`
	LastSeen time.Time `json:"last_seen"`
	Payload  []byte    `json:"payload,omitempty"`
}

// heartbeatValue is the stored value of a lease heartbeat key.
type heartbeatValue struct {
	Node string `json:"node"`
	// Renewals counts the session's successful renewals.
	Renewals uint64 `json:"renewals"`
}

// stepDownValue is the stored value of a step-down key.
type stepDownValue struct {
	To          string    `json:"to,omitempty"`
	Term        int64     `json:"term"`
	RequestedAt time.Time `json:"requested_at"`
}

// mustJSON encodes a value of one of the types above, which cannot fail.
func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("etcdbackend: encode %T: %v", v, err))
	}
	return string(b)
}

// decodeLeader decodes the value of a leader key into a record for queue
// with term. A value that cannot be decoded gives a record whose Err wraps
// election.ErrCorruptRecord and names key; the record then still carries
// Cluster, Queue and Term.
func decodeLeader(cluster, queue, key string, term int64, raw []byte) election.LeaderRecord {
	rec := election.LeaderRecord{Cluster: cluster, Queue: queue, Term: term}
	var v leaderValue
	if err := json.Unmarshal(raw, &v); err != nil {
		rec.Err = corrupt(key, raw, err)
		return rec
	}
	if err := validName("leader node", v.Node); err != nil {
		rec.Err = corrupt(key, raw, err)
		return rec
	}
	rec.Node = v.Node
	rec.Host = v.Host
	rec.PID = v.PID
	rec.ElectedAt = v.ElectedAt
	rec.Payload = v.Payload
	return rec
}

// decodeMember decodes the value of a member key of node.
func decodeMember(cluster, node, key string, raw []byte) election.MemberRecord {
	rec := election.MemberRecord{Cluster: cluster, Node: node}
	var v memberValue
	if err := json.Unmarshal(raw, &v); err != nil {
		rec.Err = corrupt(key, raw, err)
		return rec
	}
	if v.Role == "" {
		rec.Err = corrupt(key, raw, fmt.Errorf("no role"))
		return rec
	}
	rec.Host = v.Host
	rec.PID = v.PID
	rec.Role = v.Role
	rec.LastSeen = v.LastSeen
	rec.Payload = v.Payload
	return rec
}

// decodeStepDown decodes the value of the step-down key of queue.
func decodeStepDown(queue, key string, raw []byte) (election.StepDownRequest, error) {
	var v stepDownValue
	if err := json.Unmarshal(raw, &v); err != nil {
		return election.StepDownRequest{}, corrupt(key, raw, err)
	}
	if v.Term <= 0 {
		return election.StepDownRequest{}, corrupt(key, raw, fmt.Errorf("no term"))
	}
	if v.To != "" {
		if err := validName("step-down target", v.To); err != nil {
			return election.StepDownRequest{}, corrupt(key, raw, err)
		}
	}
	return election.StepDownRequest{Queue: queue, To: v.To, Term: v.Term, RequestedAt: v.RequestedAt}, nil
}

// maxTTLMillis is the longest TTL a term key may record: the longest
// time.Duration (about 292 years; etcd's own limit is shorter).
const maxTTLMillis = math.MaxInt64 / int64(time.Millisecond)

// decodeTerm decodes the value of a term key; ok is false if it cannot be
// decoded or makes no sense (a TTL that is not positive, or too long for a
// time.Duration).
func decodeTerm(raw []byte) (v termValue, ok bool) {
	if err := json.Unmarshal(raw, &v); err != nil || v.TTLMillis <= 0 || v.TTLMillis > maxTTLMillis {
		return termValue{}, false
	}
	return v, true
}

// decodeReleased decodes the value of a released key; 0 if it cannot be
// decoded.
func decodeReleased(raw []byte) int64 {
	return decodeReleasedValue(raw).Term
}

// decodeReleasedValue decodes the value of a released key; the zero value
// if it cannot be decoded.
func decodeReleasedValue(raw []byte) releasedValue {
	var v releasedValue
	if err := json.Unmarshal(raw, &v); err != nil {
		return releasedValue{}
	}
	// At is in UTC, or zero (unknown) when it lies outside the years
	// JSON can hold once in UTC (written with an offset at year 0 or 9999).
	if u := v.At.UTC(); encodable(u) {
		v.At = u
	} else {
		v.At = time.Time{}
	}
	return v
}

// encodable reports whether t can be written as JSON (years 0 to 9999 in
// its own location).
func encodable(t time.Time) bool {
	_, err := t.MarshalJSON()
	return err == nil
}

// corrupt builds the error of an undecodable value: it wraps
// election.ErrCorruptRecord, names the key and quotes a bounded prefix of
// the value.
func corrupt(key string, raw []byte, err error) error {
	const show = 64
	snippet := raw
	more := ""
	if len(snippet) > show {
		snippet, more = snippet[:show], fmt.Sprintf("... (%d bytes)", len(raw))
	}
	return fmt.Errorf("%w: etcd key %s holds %q%s: %v", election.ErrCorruptRecord, key, snippet, more, err)
}
