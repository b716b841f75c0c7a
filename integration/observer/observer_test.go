package observer

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func lines(spec ...string) string { return strings.Join(spec, "\n") + "\n" }

func at(ms int) string {
	return fmt.Sprint(time.Unix(1000, 0).Add(time.Duration(ms) * time.Millisecond).UnixNano())
}

func TestCheck(t *testing.T) {
	cases := []struct {
		name    string
		input   string
		ok      bool
		overlap time.Duration
	}{
		{"handover", lines("1 a 10 "+at(0)+" q 0", "1 a 10 "+at(100)+" q 0", "2 b 20 "+at(150)+" q 0", "2 b 20 "+at(300)+" q 0"), true, 0},
		{"overlap", lines("1 a 10 "+at(0)+" q 0", "2 b 20 "+at(50)+" q 0", "1 a 10 "+at(100)+" q 0"), false, 50 * time.Millisecond},
		{"within tolerance", lines("1 a 10 "+at(0)+" q 0", "2 b 20 "+at(99)+" q 0", "1 a 10 "+at(100)+" q 0"), true, time.Millisecond},
		{"other queue independent", lines("1 a 10 "+at(0)+" q 0", "2 b 20 "+at(50)+" r 0", "1 a 10 "+at(100)+" q 0"), true, 0},
		{"stale term late", lines("1 a 10 "+at(0)+" q 0", "2 b 20 "+at(50)+" q 0", "3 c 30 "+at(200)+" q 0", "1 a 10 "+at(250)+" q 0"), false, 200 * time.Millisecond},
		{"torn line ignored", lines("1 a 10 "+at(0)+" q 0", "2 b"), true, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ls, bad, err := Parse(strings.NewReader(tc.input))
			if err != nil {
				t.Fatal(err)
			}
			r := Check(ls, 2*time.Millisecond)
			r.Malformed = bad
			if r.OK() != tc.ok {
				t.Fatalf("OK() = %v, want %v\n%s", r.OK(), tc.ok, r)
			}
			if r.MaxOverlap != tc.overlap {
				t.Errorf("MaxOverlap = %s, want %s", r.MaxOverlap, tc.overlap)
			}
		})
	}
}
