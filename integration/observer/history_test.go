package observer

import (
	"strings"
	"testing"
	"time"

	"github.com/regentd/regent/election"
)

func TestCheckTermOrder(t *testing.T) {
	// Term 3 started before term 2 did, though they never overlapped.
	in := lines("3 a 10 "+at(0)+" q 0", "3 a 10 "+at(10)+" q 0", "2 b 20 "+at(50)+" q 0")
	ls, _, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	r := Check(ls, 0)
	if r.OK() || len(r.Order) != 1 {
		t.Fatalf("term order violation not reported:\n%s", r)
	}
}

func TestCheckHistory(t *testing.T) {
	base := time.Unix(1000, 0)
	report := func() *Report {
		in := lines("4 a 10 "+at(0)+" q 0", "4 a 10 "+at(100)+" q 0", "7 b 20 "+at(200)+" q 0", "7 b 20 "+at(300)+" q 0")
		ls, _, err := Parse(strings.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		return Check(ls, 0)
	}
	entry := func(term int64, node string, fromMS int) election.HistoryEntry {
		return election.HistoryEntry{Queue: "q", Term: term, Node: node, From: base.Add(time.Duration(fromMS) * time.Millisecond)}
	}
	many := func(newest int64, n int) []election.HistoryEntry {
		var out []election.HistoryEntry
		for i := 0; i < n; i++ {
			out = append(out, entry(newest-int64(i), "b", 150))
		}
		return out
	}
	cases := []struct {
		name string
		hist []election.HistoryEntry
		want []string // substrings, one per expected problem
	}{
		{"agree", []election.HistoryEntry{entry(8, "a", 400), entry(7, "b", 190), entry(5, "a", 50), entry(4, "a", -5)}, nil},
		{"missing term", []election.HistoryEntry{entry(7, "b", 190)}, []string{"term 4 (node a"}},
		{"other node", []election.HistoryEntry{entry(7, "a", 190), entry(4, "a", 0)}, []string{"term 7 ran on node b but the history records node a"}},
		{"workers before the term", []election.HistoryEntry{entry(7, "b", 250), entry(4, "a", 0)}, []string{"term 7's workers ran"}},
		{"not decreasing", []election.HistoryEntry{entry(4, "a", 0), entry(7, "b", 190)}, []string{"not strictly decreasing"}},
		// 20 terms kept, 7 the newest: 4 is outside the window, not a problem.
		{"trimmed window", append(many(26, 19), entry(7, "b", 150)), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := CheckHistory(report(), "q", tc.hist, 20*time.Millisecond)
			if len(got) != len(tc.want) {
				t.Fatalf("problems %q, want %d matching %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %q does not contain %q", got[i], w)
				}
			}
		})
	}
}
