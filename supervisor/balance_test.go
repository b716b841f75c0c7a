package supervisor

import "testing"

func TestBalanceShares(t *testing.T) {
	live := func(nodes ...string) map[string]bool {
		m := map[string]bool{}
		for _, n := range nodes {
			m[n] = true
		}
		return m
	}
	cases := []struct {
		name     string
		v        balanceView
		node     string
		surplus  int
		holdBack bool
	}{
		{"alone leads all", balanceView{live("a"), map[string]int{"a": 10}, 10, 10}, "a", 0, false},
		{"newcomer: leader above ceil", balanceView{live("a", "b"), map[string]int{"a": 10}, 10, 10}, "a", 5, true},
		{"newcomer holds nothing", balanceView{live("a", "b"), map[string]int{"a": 10}, 10, 10}, "b", 0, false},
		{"balanced 3 of 10", balanceView{live("a", "b", "c"), map[string]int{"a": 4, "b": 3, "c": 3}, 10, 10}, "a", 0, true},
		{"at ceil while another below floor", balanceView{live("a", "b", "c"), map[string]int{"a": 2, "b": 2}, 4, 4}, "a", 1, true},
		{"floor fine", balanceView{live("a", "b", "c"), map[string]int{"a": 2, "b": 1, "c": 1}, 4, 4}, "a", 0, true},
		{"below ceil campaigns", balanceView{live("a", "b", "c"), map[string]int{"a": 2, "b": 1, "c": 1}, 4, 4}, "b", 0, false},
		{"300 over 3 after a join", balanceView{live("a", "b", "c"), map[string]int{"a": 150, "b": 150}, 300, 300}, "a", 50, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.v.surplus(tc.node); got != tc.surplus {
				t.Errorf("surplus(%s) = %d, want %d", tc.node, got, tc.surplus)
			}
			if got := tc.v.holdsBack(tc.node); got != tc.holdBack {
				t.Errorf("holdsBack(%s) = %v, want %v", tc.node, got, tc.holdBack)
			}
		})
	}
}

// Whatever the starting counts, repeatedly applying the two rules (one
// node yields its surplus to the least loaded) converges within the bound.
func TestBalanceConverges(t *testing.T) {
	for _, start := range [][]int{{300, 0, 0}, {0, 0, 300}, {299, 1, 0}, {100, 100, 100}, {5, 0, 0}, {4, 0, 0, 0, 0}} {
		nodes := []string{"a", "b", "c", "d", "e"}[:len(start)]
		v := balanceView{live: map[string]bool{}, counts: map[string]int{}}
		for i, n := range nodes {
			v.live[n] = true
			v.counts[n] = start[i]
			v.queues += start[i]
		}
		for round := 0; round < 20; round++ {
			for _, n := range nodes {
				k := v.surplus(n)
				for ; k > 0; k-- {
					// The queue goes to a node that does not hold back.
					to := ""
					for _, m := range nodes {
						if m != n && !v.holdsBack(m) && (to == "" || v.counts[m] < v.counts[to]) {
							to = m
						}
					}
					if to == "" {
						break
					}
					v.counts[n]--
					v.counts[to]++
				}
			}
		}
		floor, ceil := v.share()
		for _, n := range nodes {
			if c := v.counts[n]; c < floor || c > ceil {
				t.Errorf("start %v: %s leads %d, want within [%d, %d] (%v)", start, n, c, floor, ceil, v.counts)
			}
		}
	}
}
