package diagnosis

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/regentd/regent/control"
	"github.com/regentd/regent/election"
)

// Every leader and follower carries its config's generation: equal for
// equal configs, different for different ones.
func TestConfigGeneration(t *testing.T) {
	cfg, small := pub(16384, "10s"), pub(4096, "10s")
	snap := NewSnapshot([]election.LeaderRecord{lead("q", "a", 3, 0, cfg)}, []election.MemberRecord{
		member("b", map[string]MemberQueue{"q": follows(cfg)}),
		member("c", map[string]MemberQueue{"q": follows(small)}),
	})
	r := Diagnose(snap, t0, nil)[0]
	if r.Leader.ConfigGeneration == "" || r.Leader.ConfigGeneration != cfg.Generation() {
		t.Fatalf("leader generation %q, want %q", r.Leader.ConfigGeneration, cfg.Generation())
	}
	if g := r.Followers[0].ConfigGeneration; g != r.Leader.ConfigGeneration {
		t.Fatalf("follower with an equal config: generation %q, leader's %q", g, r.Leader.ConfigGeneration)
	}
	if g := r.Followers[1].ConfigGeneration; g == r.Leader.ConfigGeneration || g != small.Generation() {
		t.Fatalf("follower with another config: generation %q", g)
	}
}

// The members list comes from the member records (an undecodable
// payload keeps the record's fields); a drain record is a drained warning
// whether the node runs or not, saying what it still leads.
func TestDiagnoseCluster(t *testing.T) {
	cfg := pub(16384, "10s")
	b := member("b", map[string]MemberQueue{"q": follows(cfg)})
	var p MemberPayload
	_ = json.Unmarshal(b.Payload, &p)
	p.HTTPAddr, p.Features, p.Drained = "127.0.0.1:40001", control.Features, true
	b.Payload, _ = json.Marshal(p)
	bad := election.MemberRecord{Node: "z", Host: "z-host", PID: 3, LastSeen: t0, Payload: []byte("{")}
	snap := NewSnapshot([]election.LeaderRecord{lead("q", "a", 3, 0, cfg), lead("r", "b", 4, 0, cfg)},
		[]election.MemberRecord{bad, b, member("a", map[string]MemberQueue{"q": leads(3, 0, cfg, 3)})})
	ops := control.Parse([]election.Control{
		{Kind: control.KindDrain, Name: "b", Value: control.Encode(control.Drain{Since: t0, By: "op@h", Reason: "kernel"})},
		{Kind: control.KindDrain, Name: "gone", Value: control.Encode(control.Drain{Since: t0, By: "op@h"})},
	})
	c := DiagnoseCluster(snap, ops)
	var nodes []string
	for _, m := range c.Members {
		nodes = append(nodes, m.Node)
	}
	if strings.Join(nodes, ",") != "a,b,z" {
		t.Fatalf("members %v, want a,b,z", nodes)
	}
	if m := c.Members[1]; !m.Drained || m.HTTPAddr != "127.0.0.1:40001" || m.Version != "v1" || m.Host != "b-host" || m.PID != 9 || !m.LastSeen.Equal(t0) {
		t.Fatalf("member b %+v", m)
	}
	if m := c.Members[0]; m.Drained || m.HTTPAddr != "" {
		t.Fatalf("member a %+v, want not drained, no http_addr (older record)", m)
	}
	if m := c.Members[2]; m.Host != "z-host" || m.PID != 3 || m.Version != "" {
		t.Fatalf("undecodable member z %+v", m)
	}
	if len(c.Problems) != 2 {
		t.Fatalf("problems %+v, want two drained warnings", c.Problems)
	}
	for i, want := range []string{"node b is drained since 2026-11-24T03:16:43Z by op@h (kernel); it still leads 1 queue(s)", "node gone is drained since 2026-11-24T03:16:43Z by op@h; it is not running"} {
		p := c.Problems[i]
		if p.Severity != Warning || p.Code != CodeDrained || !strings.HasPrefix(p.Message, want) {
			t.Fatalf("problem %d: %+v, want a drained warning %q", i, p, want)
		}
	}
}

func TestMixedVersions(t *testing.T) {
	members := []MemberInfo{{Node: "a", Version: "v1.2.0"}, {Node: "b", Version: "v1.3.0"}, {Node: "c", Version: "v1.2.0"}, {Node: "d"}}
	p, ok := mixedVersions(members)
	if !ok || p.Severity != Info || p.Code != CodeMixedVersions || !strings.Contains(p.Message, "v1.2.0 (a, c); v1.3.0 (b)") {
		t.Fatalf("mixed: %+v, %v", p, ok)
	}
	if _, ok := mixedVersions(members[:1]); ok {
		t.Error("one version reported as mixed")
	}
	if _, ok := mixedVersions([]MemberInfo{{Node: "a", Version: "v1"}, {Node: "b"}}); ok {
		t.Error("an unknown version counted as another version")
	}
}
