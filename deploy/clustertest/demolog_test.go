package clustertest

import (
	"strings"
	"testing"
	"time"

	"github.com/regentd/regent/integration/observer"
)

func TestParseDemoLog(t *testing.T) {
	in := strings.Join([]string{
		"emails regent-1 5 40 1000000000",
		"reports regent-1 4 41 1000000100",
		"emails regent-1 5 42 1020000000",
		"emails regent-2 7 50 3100000000",
		"emails regent-2 7 51",         // torn write
		"emails regent-2 x 51 3120000", // bad term
		"",
	}, "\n")
	lines, bad, err := ParseDemoLog(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 4 || bad != 2 {
		t.Fatalf("got %d lines, %d bad; want 4 and 2", len(lines), bad)
	}
	want := observer.Line{Queue: "emails", Node: "regent-1", Term: 5, PID: 40, At: time.Unix(1, 0)}
	if lines[0] != want {
		t.Errorf("first line = %+v, want %+v", lines[0], want)
	}

	last, ok := LastOf(lines, "emails", 5)
	if !ok || last.PID != 42 {
		t.Errorf("LastOf(emails, 5) = %+v, %v; want pid 42", last, ok)
	}
	first, ok := FirstAfter(lines, "emails", 5)
	if !ok || first.Term != 7 || first.Node != "regent-2" {
		t.Errorf("FirstAfter(emails, 5) = %+v, %v; want term 7 on regent-2", first, ok)
	}
	if _, ok := FirstAfter(lines, "reports", 4); ok {
		t.Error("FirstAfter(reports, 4) found a line; want none")
	}

	// The observer judges these lines like the test workers' own.
	r := observer.Check(lines, 0)
	if !r.OK() {
		t.Errorf("observer found problems in a clean log:\n%s", r)
	}
	overlapping := append(lines, observer.Line{Queue: "emails", Node: "regent-1", Term: 5, PID: 42, At: time.Unix(3, 200000000)})
	if r := observer.Check(overlapping, 0); r.OK() {
		t.Errorf("observer missed an overlap:\n%s", r)
	}
}
