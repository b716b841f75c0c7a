package etcdbackend

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/election/electiontest"
	"github.com/regentd/regent/internal/testenv"
)

// TestContract runs the shared backend contract suite against a real etcd.
func TestContract(t *testing.T) {
	electiontest.Run(t, &etcdHarness{endpoints: testenv.Etcd(t)})
}

// etcdHarness adapts the etcd backend to the contract suite.
type etcdHarness struct {
	endpoints []string
}

func (h *etcdHarness) Name() string { return "etcd" }

func (h *etcdHarness) New(t testing.TB, opts election.Options) election.Backend {
	t.Helper()
	log := testenv.Logger(t, opts.Node)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := New(ctx, Config{Endpoints: h.endpoints, DialTimeout: 2 * time.Second}, opts, log)
	if err != nil {
		t.Fatalf("open etcd backend for %s: %v", opts.Node, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Logf("close %s: %v", opts.Node, err)
		}
	})
	return b
}

// admin returns a plain client, closed at the end of the test.
func (h *etcdHarness) admin(t testing.TB) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: h.endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("admin client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (h *etcdHarness) KillSession(t testing.TB, b election.Backend) {
	t.Helper()
	lease := b.(*Backend).LeaseID()
	if lease == 0 {
		t.Fatal("kill session: the backend holds no lease")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := h.admin(t).Revoke(ctx, clientv3.LeaseID(lease)); err != nil {
		t.Fatalf("revoke lease %x: %v", lease, err)
	}
}

func (h *etcdHarness) CorruptLeader(t testing.TB, cluster, queue string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	key := "/regent/" + cluster + "/queues/" + queue + "/leader"
	// Keep the key on its lease: only its value is damaged.
	resp, err := h.admin(t).Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), ">", 0)).
		Then(clientv3.OpPut(key, `{"node": "half a rec`, clientv3.WithIgnoreLease())).
		Commit()
	if err != nil {
		t.Fatalf("corrupt %s: %v", key, err)
	}
	if !resp.Succeeded {
		t.Fatalf("corrupt %s: no such key", key)
	}
}

// Connections counts the distinct leases attached to the cluster's keys
// that belong to node: its member key, and keys whose JSON value names it
// (leader records, heartbeats).
func (h *etcdHarness) Connections(t testing.TB, cluster, node string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := h.admin(t).Get(ctx, "/regent/"+cluster+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("list keys: %v", err)
	}
	leases := map[int64]bool{}
	for _, kv := range resp.Kvs {
		if kv.Lease == 0 {
			continue
		}
		var v struct {
			Node string `json:"node"`
		}
		_ = json.Unmarshal(kv.Value, &v)
		if v.Node == node || strings.HasSuffix(string(kv.Key), "/members/"+node) {
			leases[kv.Lease] = true
		}
	}
	return len(leases)
}

func (h *etcdHarness) MaxConnections() int { return 1 }

func (h *etcdHarness) HolderEnv(t testing.TB) []string {
	return []string{testenv.EnvEtcdEndpoints + "=" + strings.Join(h.endpoints, ",")}
}

// openHolder opens the backend of a holder process (see HolderEnv).
func openHolder(ctx context.Context, opts election.Options, log hclog.Logger) (election.Backend, error) {
	eps := strings.Split(os.Getenv(testenv.EnvEtcdEndpoints), ",")
	return New(ctx, Config{Endpoints: eps, DialTimeout: 2 * time.Second}, opts, log)
}
