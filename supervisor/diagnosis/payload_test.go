package diagnosis

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/election"
)

func TestMemberPayloadSharesConfigs(t *testing.T) {
	a := config.Published{Command: []string{"worker", "--fast"}, Concurrency: 4, LeaseTTL: "10s"}
	b := config.Published{Command: []string{"other"}, Concurrency: 1, LeaseTTL: "10s"}
	queues := map[string]MemberQueue{}
	for i := range 5000 {
		cfg := a
		if i%1000 == 0 {
			cfg = b
		}
		mq := MemberQueue{Role: election.RoleFollower, Config: cfg}
		if i%3 == 0 {
			mq = MemberQueue{Role: election.RoleLeader, Term: int64(i + 1), Since: time.Unix(1795510000, 0).UTC(), Config: cfg, WorkerTerms: []int64{int64(i + 1)}}
		}
		queues[fmt.Sprintf("queue-%05d", i)] = mq
	}
	raw, err := json.Marshal(NewMemberPayload("v1", queues))
	if err != nil {
		t.Fatal(err)
	}
	// etcd refuses requests over 1.5 MiB; the inline form was 2.9 MB at
	// 5,000 queues with the default config.
	if len(raw) > 512<<10 {
		t.Fatalf("member payload of 5000 queues is %d bytes, want under 512 KiB", len(raw))
	}
	if n := strings.Count(string(raw), `"command"`); n != 2 {
		t.Fatalf("payload holds %d configs, want the 2 distinct ones once each", n)
	}
	got, err := DecodeMemberPayload(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Queues) != len(queues) {
		t.Fatalf("decoded %d queues, want %d", len(got.Queues), len(queues))
	}
	for name, want := range queues {
		g := got.Queues[name]
		if g.ConfigRef != nil {
			t.Fatalf("%s: reference left unresolved", name)
		}
		if len(config.Diff(want.Config, g.Config)) != 0 || g.Role != want.Role || g.Term != want.Term || !g.Since.Equal(want.Since) {
			t.Fatalf("%s: decoded %+v, want %+v", name, g, want)
		}
	}
}

func TestDecodeMemberPayloadInlineAndBadRefs(t *testing.T) {
	// Written by a replica of an earlier version: config inline.
	inline := `{"version":"old","queues":{"q":{"role":"follower","config":{"command":["w"],"concurrency":2}}}}`
	p, err := DecodeMemberPayload([]byte(inline))
	if err != nil {
		t.Fatal(err)
	}
	if c := p.Queues["q"].Config; c.Concurrency != 2 || len(c.Command) != 1 {
		t.Fatalf("inline config decoded as %+v", c)
	}
	for _, bad := range []string{
		`{"queues":{"q":{"role":"follower","config_ref":0}}}`,
		`{"queues":{"q":{"role":"follower","config_ref":1}},"configs":[{"command":["w"]}]}`,
		`{"queues":{"q":{"role":"follower","config_ref":-1}},"configs":[{"command":["w"]}]}`,
	} {
		if _, err := DecodeMemberPayload([]byte(bad)); err == nil || !strings.Contains(err.Error(), "refers to config") {
			t.Errorf("%s: err = %v, want a dangling reference error", bad, err)
		}
	}
}
