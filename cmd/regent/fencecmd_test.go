package main

import (
	"strings"
	"testing"
)

// fence sql prints the install SQL, with the claim function's signature.
func TestFenceSQLPrintsTheSchema(t *testing.T) {
	out, errOut, code := runRegent(t, nil, "fence", "sql")
	if code != 0 {
		t.Fatalf("fence sql: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"regent_fence", "claim(", "record_refusal(", "RF001", "RF002"} {
		if !strings.Contains(out, want) {
			t.Errorf("fence sql lacks %q", want)
		}
	}
}

// Bad input to the fence commands: one line naming the fix, exit 1, no
// secret.
func TestFenceCommandErrors(t *testing.T) {
	noURL := []string{"REGENT_FENCE_POSTGRES_URL=", "DATABASE_URL=", "REGENT_POSTGRES_URL="}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"fence", "install"}, "--fence-postgres-url"},
		{[]string{"fence", "transfer", "--key", "q"}, "--fence-postgres-url"},
		{[]string{"fence", "transfer", "--fence-postgres-url", "postgres://u:s3cret@127.0.0.1:1/db", "--to", "prod/4f1c2a9b0d3e5f67"}, "--key"},
		{[]string{"fence", "transfer", "--fence-postgres-url", "postgres://u:s3cret@127.0.0.1:1/db", "--key", "q", "--to", "prod"}, "<cluster>/<deployment id>"},
		{[]string{"fence", "install", "--fence-postgres-url", "postgres://u:s3cret@127.0.0.1:1/db"}, "cannot reach the fence's database"},
		{[]string{"fence", "install", "--fence-postgres-url", "nonsense"}, "fence.postgres_url"},
		{[]string{"fence", "install", "--fence-postgres-url", "postgres://u:s3cret@127.0.0.1:1/db", "--stall-timeout", "1ns"}, "stall"},
	}
	for _, c := range cases {
		out, errOut, code := runRegent(t, noURL, c.args...)
		line := lastLine(errOut)
		if code != 1 || !strings.Contains(line, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("regent %s: exit %d, stderr %q; want exit 1 and one line naming %q", strings.Join(c.args, " "), code, errOut, c.want)
		}
		if strings.Contains(out+errOut, "s3cret") {
			t.Errorf("regent %s printed the password: %q", strings.Join(c.args, " "), out+errOut)
		}
	}
}
