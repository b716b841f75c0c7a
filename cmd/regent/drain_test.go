package main

import (
	"strings"
	"testing"
)

// drain and undrain: usage errors are one line and exit 1, before any
// backend is dialled; --help shows the examples and the exit codes.
func TestDrainCommandLine(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"drain"}, "--node is required"},
		{[]string{"undrain"}, "--node is required"},
		{[]string{"drain", "--node", "n", "--wait", "-1s"}, "--wait -1s is negative"},
		{[]string{"drain", "--node", "n", "extra"}, "unknown command"},
	}
	for _, tc := range cases {
		_, errOut, code := runRegent(t, nil, tc.args...)
		if code != 1 || !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("regent %v: exit %d, stderr %q; want 1 and one line with %q", tc.args, code, errOut, tc.want)
		}
	}
	out, _, code := runRegent(t, nil, "drain", "--help")
	for _, want := range []string{"--node-id %H", "regent drain --node db-host-2", "Exit codes", "--wait", "--reason"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("drain --help: exit %d, missing %q:\n%s", code, want, out)
		}
	}
}
