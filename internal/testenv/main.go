package testenv

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
)

// EnvRole names the environment variable that turns a re-executed test
// binary into a helper process (see Main).
const EnvRole = "REGENT_TESTENV_ROLE"

// mainActive is set once Main runs the tests; servers refuse to start
// without it, since nothing would stop the shared ones.
var mainActive atomic.Bool

// sharedStops holds the stop functions of the shared servers, run by Main.
var sharedStops struct {
	mu    sync.Mutex
	stops []func()
}

// Main runs a package's tests and exits with their code; call it from
// TestMain. If this process was started as a helper (EnvRole set), it runs
// that role instead and exits. After the tests it stops every shared server
// and, if the tests passed, fails the run when goroutines are left over
// (goleak, with leakOpts to ignore known background goroutines). If the
// tests failed, it ends their output with a recap of the failures (see
// LogDumpMarker).
func Main(m *testing.M, leakOpts ...goleak.Option) {
	if role := os.Getenv(EnvRole); role != "" {
		os.Exit(runRole(role))
	}
	mainActive.Store(true)
	finish := teeStdout()
	code := m.Run()
	finish(code != 0)
	stopShared()
	if code == 0 {
		if err := goleak.Find(leakOpts...); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: leaked goroutines after the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// runRole runs the helper role named role and returns the exit code.
func runRole(role string) int {
	switch role {
	case roleEtcd:
		return runEtcdRole()
	default:
		fmt.Fprintf(os.Stderr, "testenv: unknown %s %q\n", EnvRole, role)
		return 2
	}
}

// requireMain fails t when the test binary does not run under Main.
func requireMain(t testing.TB) {
	t.Helper()
	if !mainActive.Load() {
		t.Fatal("testenv: the package's TestMain must call testenv.Main(m)")
	}
}

// addSharedStop registers stop to be run by Main after the tests.
func addSharedStop(stop func()) {
	sharedStops.mu.Lock()
	defer sharedStops.mu.Unlock()
	sharedStops.stops = append(sharedStops.stops, stop)
}

// stopShared stops the shared servers, the last started first.
func stopShared() {
	sharedStops.mu.Lock()
	stops := sharedStops.stops
	sharedStops.stops = nil
	sharedStops.mu.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
}
