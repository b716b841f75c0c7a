package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/regentd/regent/internal/faultproxy"
)

// An operator revokes the etcd lease of a leader cut off from etcd
// (`etcdctl lease revoke`, what one does to unstick it), just after one
// of its renewals: its leader key goes at once, but the leader hears
// nothing and may trust its leadership until its own deadline, counted
// from that renewal. The follower, whose watch of the leader's heartbeats
// may not have delivered the last one when the key's deletion arrives,
// must not start before: no overlap (observer), the new term's first
// worker no earlier than that heartbeat + TTL, a leader again within the
// cut-off bound of the revoke, no orphans.
func TestEtcdRevokeCutOffLeader(t *testing.T) {
	be := etcdBackend(t)
	p, err := faultproxy.Start(be.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	m := startCase(t, be, be.viaProxy(p.Addr()), "b")

	ctx, cancel := context.WithTimeout(context.Background(), hangTimeout)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + be.addr}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cli.Close() }()
	root := "/regent/" + m.c.name + "/"
	resp, err := cli.Get(ctx, root+"queues/"+mq+"/leader")
	if err != nil || len(resp.Kvs) == 0 {
		t.Fatalf("read a's leader key: %v (%d keys)", err, len(resp.Kvs))
	}
	var rec struct{ Node string }
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil || rec.Node != "a" || resp.Kvs[0].Lease == 0 {
		t.Fatalf("leader record %s (lease %x): want a's, on a lease", resp.Kvs[0].Value, resp.Kvs[0].Lease)
	}
	lease := clientv3.LeaseID(resp.Kvs[0].Lease)

	// Cut a off and revoke its lease right after its next heartbeat.
	beats := cli.Watch(ctx, fmt.Sprintf("%sleases/%016x", root, uint64(lease)), clientv3.WithRev(resp.Header.Revision+1))
	var beatAt time.Time
	for beatAt.IsZero() {
		select {
		case wr := <-beats:
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.PUT {
					beatAt = time.Now()
				}
			}
		case <-time.After(3 * testRenew):
			t.Fatal("no heartbeat of a's")
		}
	}
	p.SetMode(faultproxy.Blackhole)
	if _, err := cli.Revoke(ctx, lease); err != nil {
		t.Fatalf("revoke a's lease: %v", err)
	}
	revokedAt := time.Now()
	t.Logf("a cut off and its lease revoked %s after its last heartbeat", revokedAt.Sub(beatAt).Round(time.Millisecond))

	m.oldWorkersGone("etcd revoke of a cut-off leader", revokedAt, boundCutOff)
	_, _, first := m.c.awaitNewTerm(mq, m.term, hangTimeout)
	t.Logf("new term's first worker line %s after a's last heartbeat + TTL", first.Sub(beatAt.Add(testTTL)).Round(time.Millisecond))
	if first.Before(beatAt.Add(testTTL - historySkew)) {
		t.Errorf("new term's workers started %s before a's last heartbeat + TTL: a may have trusted its lease until then",
			beatAt.Add(testTTL).Sub(first).Round(time.Millisecond))
	}
	m.takeover("etcd revoke of a cut-off leader", revokedAt, boundCutOff)

	p.SetMode(faultproxy.Pass)
	m.c.waitFollower(mq, "a")
	m.finish()
}
