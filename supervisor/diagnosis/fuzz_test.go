package diagnosis

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/election"
)

// FuzzDecodePayloads feeds records written by another version, truncated
// or hostile, to the payload decoders, the conflict diff and the
// diagnosis: errors, never panics.
func FuzzDecodePayloads(f *testing.F) {
	good, _ := json.Marshal(MemberPayload{Version: "v1", Queues: map[string]MemberQueue{"q": {Role: "leader", Term: 3, WorkerTerms: []int64{3}}}})
	lead, _ := json.Marshal(LeaderPayload{Version: "v1", Config: config.Published{Command: []string{"w"}, Concurrency: 2, MaxRSSMB: 16384}})
	f.Add(good)
	shared, _ := json.Marshal(NewMemberPayload("v2", map[string]MemberQueue{
		"a": {Role: "follower", Config: config.Published{Command: []string{"w"}}},
		"b": {Role: "leader", Term: 2, Config: config.Published{Command: []string{"w"}}},
	}))
	f.Add(shared)
	f.Add([]byte(`{"queues": {"q": {"role": "follower", "config_ref": 3}}, "configs": [{}]}`))
	f.Add(lead)
	f.Add(good[:len(good)/2])
	f.Add([]byte(`{"queues": {"q": {"role": 7, "term": "x"}}}`))
	f.Add([]byte(`{"config": {"command": "not a list"}}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"queues": null, "future_field": [1,2,3]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := DecodeMemberPayload(b); err == nil {
			for _, q := range m.Queues {
				_ = config.Diff(q.Config, config.Published{})
				_ = SplitBrain([]Claim{{Node: "a", Term: q.Term, Since: q.Since}, {Node: "b", Term: 1}}, 0, q.Since)
			}
		}
		rec := election.LeaderRecord{Queue: "q", Node: "a", Term: 2, ElectedAt: time.Unix(0, 0), Payload: b}
		_ = Diagnose(NewSnapshot([]election.LeaderRecord{rec}, []election.MemberRecord{{Node: "b", Payload: b}}), time.Now(), nil)
		if l, err := DecodeLeaderPayload(b); err == nil {
			_ = config.Diff(l.Config, l.Config)
			_ = FormatConflicts(config.Diff(l.Config, config.Published{}))
		}
	})
}
