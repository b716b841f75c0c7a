package diagnosis

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/regentd/regent/config"
)

func TestAddFence(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	const me, other = "prod/0123456789abcdef", "staging/fedcba9876543210"
	row := func(owner string) map[string]Fence {
		return map[string]Fence{"emails": {Key: "emails", Term: 9, Owner: owner, At: now.Add(-time.Hour), OwnerSince: now.Add(-24 * time.Hour)}}
	}
	refusal := func(code, owner string, ago time.Duration) FenceRefusal {
		return FenceRefusal{At: now.Add(-ago), Key: "emails", Term: 7, Owner: owner, Node: "n2", Code: code}
	}
	cases := []struct {
		name  string
		view  FenceView
		codes []string
		// in is a word every problem's message must contain.
		in string
	}{
		{"ours, quiet", FenceView{Owner: me, Rows: row(me)}, nil, ""},
		{"no row yet", FenceView{Owner: me}, nil, ""},
		{"foreign owner", FenceView{Owner: me, Rows: row(other)}, []string{CodeForeignOwner}, other},
		{"another deployment refused", FenceView{Owner: me, Rows: row(me), Refusals: []FenceRefusal{refusal(RefusalForeignOwner, other, time.Minute)}}, []string{CodeForeignOwner}, "n2"},
		{"our own refusals as the foreign one count once", FenceView{Owner: me, Rows: row(other), Refusals: []FenceRefusal{refusal(RefusalForeignOwner, me, time.Minute)}}, []string{CodeForeignOwner}, "emails"},
		{"stale write", FenceView{Owner: me, Rows: row(me), Refusals: []FenceRefusal{refusal(RefusalStaleTerm, me, time.Minute), refusal(RefusalStaleTerm, me, 2*time.Minute)}}, []string{CodeStaleWriteRejected}, "term 7"},
		{"old refusals are forgotten", FenceView{Owner: me, Rows: row(me), Refusals: []FenceRefusal{refusal(RefusalStaleTerm, me, FenceRecent+time.Second), refusal(RefusalForeignOwner, other, time.Hour)}}, nil, ""},
		{"another key's refusals", FenceView{Owner: me, Rows: row(me), Refusals: []FenceRefusal{{At: now, Key: "sms", Term: 1, Owner: other, Code: RefusalForeignOwner}}}, nil, ""},
		{"unreadable", FenceView{Owner: me, Err: errors.New("regent_fence is not installed")}, []string{CodeFenceUnreadable}, "not installed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &Report{Queue: "emails", Problems: []Problem{}}
			r.AddFence("emails", c.view, now)
			var codes []string
			for _, p := range r.Problems {
				codes = append(codes, p.Code)
				if !strings.Contains(p.Message, c.in) {
					t.Errorf("problem %s: %q does not name %q", p.Code, p.Message, c.in)
				}
				want := Warning
				if p.Code == CodeForeignOwner {
					want = Critical
				}
				if p.Severity != want {
					t.Errorf("problem %s has severity %s, want %s", p.Code, p.Severity, want)
				}
			}
			if strings.Join(codes, ",") != strings.Join(c.codes, ",") {
				t.Errorf("problems %v, want %v", codes, c.codes)
			}
			if _, ok := c.view.Rows["emails"]; ok != (r.Fence != nil) {
				t.Errorf("Fence %+v with a row %v", r.Fence, ok)
			}
		})
	}
}

func TestFenceKeyFollowsTheLeader(t *testing.T) {
	r := &Report{Queue: "emails"}
	if k := r.FenceKey(); k != "emails" {
		t.Errorf("no leader: key %q, want the queue name", k)
	}
	r.Leader = &Leader{Config: &config.Published{FenceKey: "mail"}}
	if k := r.FenceKey(); k != "mail" {
		t.Errorf("leader publishes fence_key mail: key %q", k)
	}
}
