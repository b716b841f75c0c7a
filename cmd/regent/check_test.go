package main

import (
	"strings"
	"testing"

	"github.com/regentd/regent/supervisor/diagnosis"
)

// An info (mixed versions) is printed but never changes --check's exit
// code; a warning or a critical problem does.
func TestCheckInfoNeverChangesTheCode(t *testing.T) {
	info := diagnosis.Problem{Severity: diagnosis.Info, Code: diagnosis.CodeMixedVersions, Message: "live members run 2 versions"}
	warn := diagnosis.Problem{Severity: diagnosis.Warning, Code: diagnosis.CodeConfigConflict, Message: "differs"}
	cases := []struct {
		name     string
		cluster  []diagnosis.Problem
		queue    []diagnosis.Problem
		code     int
		first    string
		contains []string
	}{
		{"info only", []diagnosis.Problem{info}, nil, checkOK, "REGENT OK", []string{"REGENT INFO - cluster c: mixed_versions"}},
		{"info and a warning", []diagnosis.Problem{info}, []diagnosis.Problem{warn}, checkWarning, "REGENT WARNING - queue q: config_conflict", []string{"REGENT INFO - cluster c: mixed_versions"}},
		{"nothing", nil, nil, checkOK, "REGENT OK", nil},
	}
	for _, c := range cases {
		doc := &statusDoc{Cluster: "c", Queues: []queueStatus{{Report: diagnosis.Report{Queue: "q", Problems: c.queue}}}}
		doc.Problems = c.cluster
		if got := checkCode(doc); got != c.code {
			t.Errorf("%s: code %d, want %d", c.name, got, c.code)
		}
		var b strings.Builder
		writeCheck(&b, doc)
		if !strings.HasPrefix(b.String(), c.first) {
			t.Errorf("%s: output begins %q, want %q", c.name, b.String(), c.first)
		}
		for _, want := range c.contains {
			if !strings.Contains(b.String(), want) {
				t.Errorf("%s: output %q lacks %q", c.name, b.String(), want)
			}
		}
	}
}
