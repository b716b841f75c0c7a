//go:build pgdev

package pgbackend

import (
	"context"
	"os"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/election/electiontest"
	"github.com/regentd/regent/internal/testenv"
)

const devEnvURL = "PGBACKEND_DEV_URL"

func TestMain(m *testing.M) {
	electiontest.HolderMain(func(ctx context.Context, opts election.Options, log hclog.Logger) (election.Backend, error) {
		return New(ctx, Config{URL: os.Getenv(devEnvURL)}, opts, log)
	})
	testenv.Main(m)
}

type devHarness struct{ url string }

func (h devHarness) Name() string { return "postgres" }
func (h devHarness) New(t testing.TB, opts election.Options) election.Backend {
	return openBackend(t, h.url, opts)
}
func (h devHarness) KillSession(t testing.TB, b election.Backend) {
	c := rawConn(t, h.url)
	if _, err := c.Exec(testCtx(t), `SELECT pg_terminate_backend($1)`, b.(*Backend).LockPID()); err != nil {
		t.Fatal(err)
	}
}
func (h devHarness) CorruptLeader(t testing.TB, cluster, queue string) {
	c := rawConn(t, h.url)
	if _, err := c.Exec(testCtx(t), `UPDATE regent_leaders SET payload = '"garbage"', node = '' WHERE cluster = $1 AND queue = $2`, cluster, queue); err != nil {
		t.Fatal(err)
	}
}
func (h devHarness) Connections(t testing.TB, cluster, node string) int {
	c := rawConn(t, h.url)
	var n int
	if err := c.QueryRow(testCtx(t), `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, applicationName(cluster, node)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
func (h devHarness) MaxConnections() int { return 2 }
func (h devHarness) HolderEnv(t testing.TB) []string {
	return []string{devEnvURL + "=" + h.url}
}

func TestDevContract(t *testing.T) {
	electiontest.Run(t, devHarness{url: testenv.NewDatabase(t)})
}
