package testenv

import (
	"strings"
	"testing"
)

// The recap repeats the failure lines printed before a process log and
// the FAIL headers, and none of the log itself.
func TestRecapRepeatsFailuresNotLogs(t *testing.T) {
	out := `--- FAIL: TestRandomFaults (260.00s)
    --- FAIL: TestRandomFaults/etcd (130.00s)
        random_test.go:150: an early line, too far above the failure
        random_test.go:152: random faults: seed 42
        random_test.go:255: etcd: +0.5s sigstop r1 for 1s
        random_test.go:255: etcd: +0.7s sigstop r3 for 1s
        random_test.go:255: etcd: +1.0s sigkill r2 for 1s
        random_test.go:268: etcd: longest gaps: 1. 12s without a worker on r05
        random_test.go:274: etcd: queue r05 had no worker for 12s from +30.0s; bound 13s
        harness_test.go:235: --- log of replica r3 ---
            2026-11-24T11:51:39.081Z [INFO]  regent: leadership_acquired: node=r3
            random_test.go:1: a log line that looks like a test line
        harness_test.go:235: --- log of replica r1 ---
            2026-11-24T11:51:45.345Z [INFO]  regent: worker output
FAIL
`
	rec := &recapper{}
	for _, l := range strings.Split(out, "\n") {
		rec.line(l)
	}
	var b strings.Builder
	rec.write(&b)
	got := b.String()
	for _, want := range []string{"--- FAIL: TestRandomFaults/etcd", "queue r05 had no worker", "longest gaps"} {
		if !strings.Contains(got, want) {
			t.Errorf("recap lacks %q:\n%s", want, got)
		}
	}
	for _, not := range []string{"leadership_acquired", "looks like a test line", "worker output", "an early line"} {
		if strings.Contains(got, not) {
			t.Errorf("recap repeats %q:\n%s", not, got)
		}
	}
}

// Nothing to recap when no test failed with a log.
func TestRecapEmpty(t *testing.T) {
	rec := &recapper{}
	rec.line("    some_test.go:10: fine")
	var b strings.Builder
	rec.write(&b)
	if b.Len() != 0 {
		t.Errorf("recap of a passing run: %q", b.String())
	}
}
