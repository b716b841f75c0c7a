package testenv

import (
	"os"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// EnvLogLevel names the environment variable that sets the level of the
// loggers returned by Logger (default "debug": t.Log output is only shown
// for failed tests or with -v).
const EnvLogLevel = "REGENT_TEST_LOG_LEVEL"

// Logger returns an hclog logger named name that writes to t.Log. Call it
// before starting what logs: lines logged after the cleanups registered
// later have run (by a goroutine that outlived them) go to stderr instead
// of panicking.
func Logger(t testing.TB, name string) hclog.Logger {
	w := &lineWriter{t: t}
	t.Cleanup(w.finish)
	level := hclog.LevelFromString(os.Getenv(EnvLogLevel))
	if level == hclog.NoLevel {
		level = hclog.Debug
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:   name,
		Level:  level,
		Output: w,
	})
}
