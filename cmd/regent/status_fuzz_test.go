package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/supervisor/diagnosis"
)

// recordsBackend serves fixed leader, member and operator records to
// buildStatus, which reads nothing else; any other method panics (nil
// interface).
type recordsBackend struct {
	election.Backend
	leaders  []election.LeaderRecord
	members  []election.MemberRecord
	controls []election.Control
}

func (b recordsBackend) Controls(context.Context) ([]election.Control, error) {
	return b.controls, nil
}

func (b recordsBackend) Leaders(context.Context) ([]election.LeaderRecord, error) {
	return b.leaders, nil
}

func (b recordsBackend) Members(context.Context) ([]election.MemberRecord, error) {
	return b.members, nil
}

// statusCodes are the problem codes status documents (README) and their
// severities.
var statusCodes = map[string]string{
	"no_leader": sevCritical, "split_brain": sevCritical, "stale_worker": sevCritical,
	"corrupt_record":  "", // critical for a record, warning for a payload
	"config_conflict": sevWarning, "crash_loop": sevWarning, "rss_loop": sevWarning, "wedged": sevWarning,
	"paused": sevWarning,
	// Cluster-wide (doc.Problems).
	"drained": sevWarning, "mixed_versions": diagnosis.Info,
}

// FuzzStatusDoc builds the status document from records whose payloads
// (and names, terms) another version or a hostile writer chose: it must
// encode as JSON, print one --check line per problem, and report an
// undecodable leader record as a critical corrupt_record.
func FuzzStatusDoc(f *testing.F) {
	lead := []byte(`{"version":"v0.1.0","config":{"command":["w"],"concurrency":2,"max_rss_mb":16384,"lease_ttl":"10s"}}`)
	mem := []byte(`{"version":"v0.1.0","queues":{"q":{"role":"follower","config":{"command":["w"],"concurrency":2,"max_rss_mb":4096}}}}`)
	self := []byte(`{"version":"v0.1.0","queues":{"q":{"role":"leader","term":17,"worker_terms":[16,17],"workers":[{"index":0,"pid":4250,"state":"running","rss_loop":true,"wedged":true}],"degraded":true}}}`)
	f.Add(lead, mem, self, "host-b", int64(17), false)
	f.Add(lead, mem, self, "host-b", int64(17), true)
	f.Add([]byte(`{"config":{"lease_ttl":"-5h","command":"w"}}`), []byte(`{"queues":{"q":null,"":{"role":"leader","term":-1}}}`), []byte(`null`), "", int64(0), false)
	f.Add([]byte(`{"version":"v9","config":{"lease_ttl":"10s"},"future":{}}`), []byte(`{"queues":{"q\nREGENT OK - fine":{"role":"leader","term":18}}}`), self, "n\r\nREGENT OK", int64(17), false)
	f.Add([]byte(`{"ver`), []byte(`{"queues":{"q":{"role":"leader","term":9223372036854775807,"since":"0001-01-01T00:00:00Z"}}}`), []byte{}, "host-b", int64(1), false)
	f.Fuzz(func(t *testing.T, leaderPayload, memberPayload, leaderMemberPayload []byte, node string, term int64, corrupt bool) {
		now := time.Now()
		rec := election.LeaderRecord{Cluster: "c", Queue: "q", Node: "host-a", Host: "host-a", PID: 1, Term: term,
			ElectedAt: now.Add(-time.Minute), Payload: leaderPayload}
		if corrupt {
			rec.Err = fmt.Errorf("%w: etcd key /regent/c/queues/q/leader holds %q", election.ErrCorruptRecord, leaderPayload)
		}
		b := recordsBackend{
			leaders: []election.LeaderRecord{rec},
			members: []election.MemberRecord{
				{Cluster: "c", Node: "host-a", Role: election.RoleLeader, LastSeen: now, Payload: leaderMemberPayload},
				{Cluster: "c", Node: node, Role: election.RoleFollower, LastSeen: now, Payload: memberPayload},
			},
		}
		doc, err := buildStatus(context.Background(), b, "c", "")
		if err != nil {
			t.Fatalf("buildStatus: %v", err)
		}
		enc, err := json.Marshal(doc)
		if err != nil {
			t.Fatalf("status document cannot be encoded: %v", err)
		}
		var back statusDoc
		if err := json.Unmarshal(enc, &back); err != nil {
			t.Fatalf("status document does not read back: %v", err)
		}
		problems := 0
		for _, p := range doc.Problems {
			problems++
			sev, known := statusCodes[p.Code]
			if !known || (sev != "" && p.Severity != sev) {
				t.Fatalf("cluster problem %+v: unknown code or wrong severity", p)
			}
		}
		var qcorrupt bool
		for _, q := range doc.Queues {
			for _, p := range q.Problems {
				problems++
				sev, known := statusCodes[p.Code]
				if !known || (sev != "" && p.Severity != sev) || (p.Severity != sevWarning && p.Severity != sevCritical) {
					t.Fatalf("problem %+v: unknown code or wrong severity", p)
				}
				if q.Queue == "q" && p.Code == "corrupt_record" && p.Severity == sevCritical {
					qcorrupt = true
				}
			}
		}
		if corrupt && (!qcorrupt || checkCode(doc) != checkCritical) {
			t.Fatalf("a corrupt leader record is not a critical corrupt_record: %s", enc)
		}
		var out bytes.Buffer
		writeCheck(&out, doc)
		lines := strings.Count(out.String(), "\n")
		if want := max(problems, 1); lines != want || strings.Contains(out.String(), "\r") {
			t.Fatalf("--check printed %d lines for %d problems:\n%s", lines, problems, out.String())
		}
		out.Reset()
		writeHuman(&out, doc)
	})
}
