package worker

import (
	"slices"
	"testing"
)

// The guard-only variables, the test seam among them, never reach the
// worker.
func TestWorkerEnvDropsGuardOnly(t *testing.T) {
	in := []string{"PATH=/bin", EnvTestStartDelay + "=1s", GuardEnvPrefix + "RELEASE={}", "REGENT_TERM=3", "REGENT_GUARDIAN=x"}
	want := []string{"PATH=/bin", "REGENT_TERM=3", "REGENT_GUARDIAN=x"}
	if got := workerEnv(in); !slices.Equal(got, want) {
		t.Fatalf("workerEnv(%q) = %q, want %q", in, got, want)
	}
}
