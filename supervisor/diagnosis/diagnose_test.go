package diagnosis

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/election"
)

var t0 = time.Date(2026, 11, 24, 3, 16, 43, 0, time.UTC)

func pub(maxRSS int, ttl string) config.Published {
	return config.Published{Command: []string{"w"}, Concurrency: 2, MaxRSSMB: maxRSS, StopTimeout: "10s", LeaseTTL: ttl}
}

// lead is the leader record of queue q held by node at term, elected ago
// before t0, publishing cfg.
func lead(q, node string, term int64, ago time.Duration, cfg config.Published) election.LeaderRecord {
	payload, _ := json.Marshal(LeaderPayload{Version: "v1", Config: cfg})
	return election.LeaderRecord{Cluster: "c", Queue: q, Node: node, Host: node + "-host", PID: 7, Term: term,
		ElectedAt: t0.Add(-ago), Payload: payload}
}

// member is node's member record listing queues.
func member(node string, queues map[string]MemberQueue) election.MemberRecord {
	payload, _ := json.Marshal(NewMemberPayload("v1", queues))
	return election.MemberRecord{Cluster: "c", Node: node, Host: node + "-host", PID: 9, LastSeen: t0, Payload: payload}
}

func follows(cfg config.Published) MemberQueue {
	return MemberQueue{Role: election.RoleFollower, Config: cfg}
}

func leads(term int64, ago time.Duration, cfg config.Published, workerTerms ...int64) MemberQueue {
	return MemberQueue{Role: election.RoleLeader, Term: term, Since: t0.Add(-ago), Config: cfg, WorkerTerms: workerTerms}
}

// problems renders a report's problems as "severity code" in order.
func problems(r Report) []string {
	out := []string{}
	for _, p := range r.Problems {
		out = append(out, p.Severity+" "+p.Code)
	}
	return out
}

func TestDiagnose(t *testing.T) {
	cfg := pub(16384, "10s")
	small := pub(4096, "10s")
	tests := []struct {
		name    string
		leaders []election.LeaderRecord
		members []election.MemberRecord
		only    []string
		want    map[string][]string // queue -> "severity code", in order
		check   func(t *testing.T, r map[string]Report)
	}{{
		name:    "healthy",
		leaders: []election.LeaderRecord{lead("q", "a", 5, time.Hour, cfg)},
		members: []election.MemberRecord{member("a", map[string]MemberQueue{"q": leads(5, time.Hour, cfg, 5)}), member("b", map[string]MemberQueue{"q": follows(cfg)})},
		want:    map[string][]string{"q": {}},
		check: func(t *testing.T, r map[string]Report) {
			q := r["q"]
			if q.Leader == nil || q.Leader.Node != "a" || q.Leader.Version != "v1" || q.Leader.Config == nil || q.Leader.Workers == nil {
				t.Errorf("leader = %+v", q.Leader)
			}
			if len(q.Followers) != 1 || q.Followers[0].Node != "b" || q.Followers[0].Conflicts == nil || len(q.Followers[0].Conflicts) != 0 {
				t.Errorf("followers = %+v", q.Followers)
			}
		},
	}, {
		name:    "config conflict, field by field",
		leaders: []election.LeaderRecord{lead("q", "a", 5, time.Hour, cfg)},
		members: []election.MemberRecord{member("b", map[string]MemberQueue{"q": follows(pub(4096, "5s"))})},
		want:    map[string][]string{"q": {"warning config_conflict"}},
		check: func(t *testing.T, r map[string]Report) {
			q := r["q"]
			want := "follower b differs from leader a: max_rss_mb leader=16384 follower=4096; lease_ttl leader=10s follower=5s"
			if q.Problems[0].Message != want {
				t.Errorf("message %q, want %q", q.Problems[0].Message, want)
			}
			if c := q.Followers[0].Conflicts; len(c) != 2 || c[0].Field != "max_rss_mb" || c[1].Field != "lease_ttl" {
				t.Errorf("conflicts = %+v", c)
			}
		},
	}, {
		name:    "no leader",
		members: []election.MemberRecord{member("b", map[string]MemberQueue{"q": follows(cfg)})},
		want:    map[string][]string{"q": {"critical no_leader"}},
	}, {
		name: "corrupt leader record is critical, and not also no_leader",
		leaders: []election.LeaderRecord{{Queue: "q", Node: "a", Term: 3,
			Err: fmt.Errorf("%w: garbage", election.ErrCorruptRecord)}},
		members: []election.MemberRecord{member("b", map[string]MemberQueue{"q": follows(small)})},
		want:    map[string][]string{"q": {"critical corrupt_record"}},
	}, {
		name:    "corrupt leader payload is a warning; no conflict without a config",
		leaders: []election.LeaderRecord{{Queue: "q", Node: "a", Term: 3, ElectedAt: t0, Payload: []byte(`{"ver`)}},
		members: []election.MemberRecord{member("b", map[string]MemberQueue{"q": follows(small)})},
		want:    map[string][]string{"q": {"warning corrupt_record"}},
		check: func(t *testing.T, r map[string]Report) {
			if l := r["q"].Leader; l == nil || l.Config != nil || l.Term != 3 {
				t.Errorf("leader = %+v", l)
			}
		},
	}, {
		name:    "undecodable member record takes no part",
		leaders: []election.LeaderRecord{lead("q", "a", 5, time.Hour, cfg)},
		members: []election.MemberRecord{{Node: "b", Payload: []byte(`{"queues":[1]}`)}, {Node: "c", Err: errors.New("bad"), Payload: []byte(`{}`)}},
		want:    map[string][]string{"q": {}},
	}, {
		name:    "older claim within the grace",
		leaders: []election.LeaderRecord{lead("q", "b", 6, 5*time.Second, cfg)},
		members: []election.MemberRecord{member("a", map[string]MemberQueue{"q": leads(5, time.Hour, cfg, 5)}), member("b", map[string]MemberQueue{"q": leads(6, 5*time.Second, cfg, 6)})},
		want:    map[string][]string{"q": {}},
	}, {
		name:    "older claim and workers past the grace: split brain, stale worker",
		leaders: []election.LeaderRecord{lead("q", "b", 6, 12*time.Second, cfg)},
		members: []election.MemberRecord{member("a", map[string]MemberQueue{"q": leads(5, time.Hour, cfg, 5)}), member("b", map[string]MemberQueue{"q": leads(6, 12*time.Second, cfg, 6)})},
		want:    map[string][]string{"q": {"critical stale_worker", "critical split_brain"}},
		check: func(t *testing.T, r map[string]Report) {
			q := r["q"]
			if len(q.Claimants) != 2 || q.Problems[1].Message != "2 members claim to lead: a (term 5), b (term 6)" {
				t.Errorf("claimants %+v, problems %+v", q.Claimants, q.Problems)
			}
			if !slices.Equal(q.Stale, []StaleWorker{{Node: "a", Term: 5, Current: 6}}) ||
				q.Problems[0].Message != "node a still runs workers of term 5; current term is 6" {
				t.Errorf("stale %+v, problems %+v", q.Stale, q.Problems)
			}
		},
	}, {
		name:    "two claims of one term: split brain at once",
		leaders: []election.LeaderRecord{lead("q", "b", 6, time.Second, cfg)},
		members: []election.MemberRecord{member("a", map[string]MemberQueue{"q": leads(6, time.Second, cfg)}), member("b", map[string]MemberQueue{"q": leads(6, time.Second, cfg)})},
		want:    map[string][]string{"q": {"critical split_brain"}},
	}, {
		name:    "the grace follows the leader's published TTL (2s + 1s < 4s)",
		leaders: []election.LeaderRecord{lead("q", "b", 6, 4*time.Second, pub(16384, "2s"))},
		members: []election.MemberRecord{member("a", map[string]MemberQueue{"q": leads(5, time.Hour, pub(16384, "2s"), 5)}), member("b", map[string]MemberQueue{"q": leads(6, 4*time.Second, pub(16384, "2s"), 6)})},
		want:    map[string][]string{"q": {"critical stale_worker", "critical split_brain"}},
	}, {
		name:    "leader TTL unknown: 10s + 1s fallback, still within",
		leaders: []election.LeaderRecord{lead("q", "b", 6, 10500*time.Millisecond, pub(16384, ""))},
		members: []election.MemberRecord{member("a", map[string]MemberQueue{"q": leads(5, time.Hour, cfg, 5)}), member("b", map[string]MemberQueue{"q": leads(6, 10500*time.Millisecond, cfg, 6)})},
		want:    map[string][]string{"q": {"warning config_conflict"}}, // a's lease_ttl 10s against ""
	}, {
		name:    "no leader record: fallback grace for the claims",
		members: []election.MemberRecord{member("a", map[string]MemberQueue{"q": leads(5, time.Hour, cfg, 5)}), member("b", map[string]MemberQueue{"q": leads(6, 12*time.Second, cfg, 6)})},
		want:    map[string][]string{"q": {"critical no_leader", "critical split_brain"}},
	}, {
		name:    "leader's workers: crash loop, rss loop, wedged",
		leaders: []election.LeaderRecord{lead("q", "a", 5, time.Hour, cfg)},
		members: []election.MemberRecord{member("a", map[string]MemberQueue{"q": {Role: election.RoleLeader, Term: 5, Config: cfg, Degraded: true,
			Workers: []WorkerInfo{{Index: 0, PID: 11, State: "degraded"}, {Index: 1, PID: 12, RSSLoop: true, Wedged: true}}}})},
		want: map[string][]string{"q": {"warning crash_loop", "warning rss_loop", "warning wedged"}},
		check: func(t *testing.T, r map[string]Report) {
			if q := r["q"]; !q.Degraded || len(q.Leader.Workers) != 2 || len(q.Followers) != 0 {
				t.Errorf("report = %+v", q)
			}
		},
	}, {
		name:    "only: other queues left out, an unknown one reported",
		leaders: []election.LeaderRecord{lead("q", "a", 5, time.Hour, cfg), lead("r", "a", 5, time.Hour, cfg)},
		members: []election.MemberRecord{member("b", map[string]MemberQueue{"q": follows(small), "r": follows(small)})},
		only:    []string{"q", "x"},
		want:    map[string][]string{"q": {"warning config_conflict"}, "x": {"critical no_leader"}},
		check: func(t *testing.T, r map[string]Report) {
			if m := r["x"].Problems[0].Message; m != "no replica leads or follows queue x" {
				t.Errorf("message %q", m)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reports := Diagnose(NewSnapshot(tt.leaders, tt.members), t0, tt.only)
			got := map[string]Report{}
			for i, r := range reports {
				if i > 0 && reports[i-1].Queue >= r.Queue {
					t.Errorf("reports not sorted by queue: %q before %q", reports[i-1].Queue, r.Queue)
				}
				got[r.Queue] = r
				if !slices.Equal(problems(r), tt.want[r.Queue]) {
					t.Errorf("queue %s: problems %v, want %v (%+v)", r.Queue, problems(r), tt.want[r.Queue], r.Problems)
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("queues %v, want %v", sortedKeys(got), sortedKeys(tt.want))
			}
			if tt.check != nil {
				tt.check(t, got)
			}
		})
	}
}

// A member's problems come in node order whatever order the backend
// returns the records in, and NewSnapshot leaves its argument alone.
func TestDiagnoseMemberOrder(t *testing.T) {
	cfg := pub(16384, "10s")
	members := []election.MemberRecord{
		member("c", map[string]MemberQueue{"q": follows(pub(1, "10s"))}),
		member("a", map[string]MemberQueue{"q": follows(pub(2, "10s"))}),
	}
	r := Diagnose(NewSnapshot([]election.LeaderRecord{lead("q", "b", 1, time.Hour, cfg)}, members), t0, nil)
	if len(r) != 1 || len(r[0].Problems) != 2 || !strings.Contains(r[0].Problems[0].Message, "follower a ") {
		t.Fatalf("problems %+v", r)
	}
	if members[0].Node != "c" {
		t.Error("NewSnapshot reordered its argument")
	}
}

func TestGrace(t *testing.T) {
	for _, tt := range []struct {
		ttl  *string
		want time.Duration
	}{
		{ptr("10s"), 11 * time.Second},
		{ptr("2s"), 3 * time.Second},
		{ptr("1m30s"), 91 * time.Second},
		{nil, 11 * time.Second},
		{ptr(""), 11 * time.Second},
		{ptr("forever"), 11 * time.Second},
		{ptr("-5h"), 11 * time.Second},
		{ptr("0s"), 11 * time.Second},
		{ptr("2562047h47m16.854775807s"), time.Duration(1<<63 - 1)},
	} {
		var cfg *config.Published
		name := "<nil>"
		if tt.ttl != nil {
			c := pub(1, *tt.ttl)
			cfg, name = &c, *tt.ttl
		}
		if got := Grace(cfg); got != tt.want {
			t.Errorf("Grace(lease_ttl %q) = %s, want %s", name, got, tt.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestSplitBrain(t *testing.T) {
	grace := 11 * time.Second
	for _, tt := range []struct {
		name   string
		claims []Claim
		want   []string
	}{
		{"none", nil, nil},
		{"one", []Claim{{Node: "a", Term: 1}}, nil},
		{"older within grace", []Claim{{Node: "a", Term: 1}, {Node: "b", Term: 2, Since: t0.Add(-10 * time.Second)}}, nil},
		{"older past grace", []Claim{{Node: "a", Term: 1}, {Node: "b", Term: 2, Since: t0.Add(-11 * time.Second)}}, []string{"a", "b"}},
		{"same term", []Claim{{Node: "a", Term: 2, Since: t0}, {Node: "b", Term: 2, Since: t0}}, []string{"a", "b"}},
		{"two older within grace", []Claim{{Node: "a", Term: 1}, {Node: "b", Term: 2}, {Node: "c", Term: 3, Since: t0}}, nil},
	} {
		var got []string
		for _, c := range SplitBrain(tt.claims, grace, t0) {
			got = append(got, c.Node)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: claimants %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestConflictsRule(t *testing.T) {
	cfg, small := pub(16384, "10s"), pub(4096, "10s")
	led := &Report{Leader: &Leader{Node: "a", Config: &cfg}}
	unknown := &Report{Leader: &Leader{Node: "a"}}
	for _, tt := range []struct {
		name string
		r    *Report
		node string
		want int
	}{
		{"follower differs", led, "b", 1},
		{"follower agrees", &Report{Leader: &Leader{Node: "a", Config: &small}}, "b", 0},
		{"the leader itself", led, "a", 0},
		{"no leader", &Report{}, "b", 0},
		{"leader config unknown", unknown, "b", 0},
		{"no report", nil, "b", 0},
	} {
		if got := tt.r.Conflicts(tt.node, small); len(got) != tt.want {
			t.Errorf("%s: %d conflicts %+v, want %d", tt.name, len(got), got, tt.want)
		}
	}
}
