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
	// secure, when set, is the replicas' connection (TLS, user) and
	// rootClient the harness's own; nil: plain http, no auth.
	secure     *Config
	rootClient func(t testing.TB) *clientv3.Client
}

// TestContractTLS runs the representative cases of the contract against
// an etcd that requires TLS client certificates and authentication, as a
// user whose role grants read-write on /regent/ only.
func TestContractTLS(t *testing.T) {
	certs := testenv.NewCerts(t)
	e := testenv.NewEtcdWith(t, testenv.EtcdOptions{TLS: certs})
	root := e.Client(t, "", "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const rootPW, regentPW = "root-secret-1", "regent-secret-1"
	steps := []func() error{
		func() error { _, err := root.UserAdd(ctx, "root", rootPW); return err },
		func() error { _, err := root.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := root.RoleAdd(ctx, "regent"); return err },
		func() error {
			_, err := root.RoleGrantPermission(ctx, "regent", "/regent/", clientv3.GetPrefixRangeEnd("/regent/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := root.UserAdd(ctx, "regent", regentPW); return err },
		func() error { _, err := root.UserGrantRole(ctx, "regent", "regent"); return err },
		func() error { _, err := root.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("auth setup step %d: %v", i+1, err)
		}
	}
	electiontest.RunCases(t, &etcdHarness{
		endpoints: e.Endpoints(),
		secure: &Config{Endpoints: e.Endpoints(), Username: "regent", Password: regentPW,
			CAFile: certs.CAFile, CertFile: certs.ClientCert, KeyFile: certs.ClientKey},
		rootClient: func(t testing.TB) *clientv3.Client { return e.Client(t, "root", rootPW) },
	}, electiontest.Representative...)
}

func (h *etcdHarness) Name() string { return "etcd" }

func (h *etcdHarness) New(t testing.TB, opts election.Options) election.Backend {
	t.Helper()
	log := testenv.Logger(t, opts.Node)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := Config{Endpoints: h.endpoints}
	if h.secure != nil {
		cfg = *h.secure
	}
	cfg.DialTimeout = 2 * time.Second
	b, err := New(ctx, cfg, opts, log)
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
	if h.rootClient != nil {
		return h.rootClient(t)
	}
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
