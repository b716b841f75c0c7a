package etcdbackend

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/regentd/regent/election"
	"github.com/regentd/regent/election/electiontest"
	"github.com/regentd/regent/internal/testenv"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Temporary, until the shared main_test.go and contract_test.go land.

const devEnvEndpoints = "REGENT_DEV_ETCD_ENDPOINTS"

func TestMain(m *testing.M) {
	electiontest.HolderMain(func(ctx context.Context, opts election.Options, log hclog.Logger) (election.Backend, error) {
		return New(ctx, Config{Endpoints: strings.Split(os.Getenv(devEnvEndpoints), ",")}, opts, log)
	})
	testenv.Main(m)
}

type devHarness struct{ eps []string }

func (h devHarness) Name() string { return "etcd" }
func (h devHarness) New(t testing.TB, opts election.Options) election.Backend {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := New(ctx, Config{Endpoints: h.eps}, opts, testenv.Logger(t, opts.Node))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return b
}
func (h devHarness) KillSession(t testing.TB, b election.Backend) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: h.eps})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Revoke(context.Background(), clientv3.LeaseID(b.(*Backend).LeaseID())); err != nil {
		t.Fatal(err)
	}
}
func (h devHarness) CorruptLeader(t testing.TB, cluster, queue string) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: h.eps})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(context.Background(), keyspace{cluster}.leader(queue), "{garbage"); err != nil {
		t.Fatal(err)
	}
}
func (h devHarness) Connections(t testing.TB, cluster, node string) int { return 1 }
func (h devHarness) MaxConnections() int                                { return 1 }
func (h devHarness) HolderEnv(t testing.TB) []string {
	return []string{devEnvEndpoints + "=" + strings.Join(h.eps, ",")}
}

func TestDevContract(t *testing.T) {
	electiontest.Run(t, devHarness{eps: testenv.Etcd(t)})
}
