package etcdbackend

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/internal/testenv"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestCorruptRecordsInEtcd(t *testing.T) {
	eps := testenv.Etcd(t)
	cluster := uniq("c")
	a := open(t, eps, testOptions(cluster, "a"))
	ro := open(t, eps, election.Options{Identity: election.Identity{Cluster: cluster, Node: "status"}, ReadOnly: true})
	cli := admin(t, eps)
	ctx := ctxT(t, 20*time.Second)
	la := mustCampaign(t, a, "good", 5*time.Second)
	if err := a.SetMember(ctx, election.RoleLeader, nil); err != nil {
		t.Fatal(err)
	}
	for name, raw := range hostile {
		queue := "q-" + strings.ReplaceAll(name, " ", "-")
		key := ro.keys.leader(queue)
		if _, err := cli.Put(ctx, key, string(raw)); err != nil {
			t.Fatalf("put %s: %v", name, err)
		}
		rec, err := ro.Leader(ctx, queue)
		if !errors.Is(err, election.ErrCorruptRecord) || !strings.Contains(err.Error(), key) {
			t.Fatalf("%s: Leader error %v, want ErrCorruptRecord naming %s", name, err, key)
		}
		if !errors.Is(rec.Err, election.ErrCorruptRecord) || rec.Queue != queue || rec.Term == 0 {
			t.Fatalf("%s: record %+v", name, rec)
		}
		if _, err := cli.Put(ctx, ro.keys.stepDown(queue), string(raw)); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := ro.StepDownRequest(ctx, queue); ok || !errors.Is(err, election.ErrCorruptRecord) {
			t.Fatalf("%s: StepDownRequest %v, %v", name, ok, err)
		}
		if _, err := cli.Put(ctx, ro.keys.member("m-"+queue), string(raw)); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := ro.Leaders(ctx)
	if err != nil {
		t.Fatalf("Leaders: %v", err)
	}
	if len(recs) != len(hostile)+1 {
		t.Fatalf("Leaders returned %d records, want %d", len(recs), len(hostile)+1)
	}
	for _, r := range recs {
		if r.Queue == "good" {
			if r.Err != nil || r.Node != "a" || r.Term != la.Term() || r.RenewedAt.IsZero() {
				t.Fatalf("good record %+v", r)
			}
			continue
		}
		if !errors.Is(r.Err, election.ErrCorruptRecord) {
			t.Fatalf("record of %s: Err %v", r.Queue, r.Err)
		}
	}
	members, err := ro.Members(ctx)
	if err != nil {
		t.Fatalf("Members: %v", err)
	}
	bad := 0
	for _, m := range members {
		if m.Err != nil {
			bad++
			continue
		}
		if m.Node != "a" || m.Role != election.RoleLeader || time.Since(m.LastSeen) > testTTL+time.Second {
			t.Fatalf("member %+v", m)
		}
	}
	if bad != len(hostile) || len(members) != len(hostile)+1 {
		t.Fatalf("%d members, %d corrupt", len(members), bad)
	}

	// A corrupt leader record does not stop a campaign: it waits for the
	// key (not on any lease here) to go.
	queue := "q-truncated"
	waiting := campaignAsync(ctx, a, queue)
	if _, err := cli.Delete(ctx, a.keys.leader(queue)); err != nil {
		t.Fatal(err)
	}
	r := result(t, waiting, 3*testTTL)
	if r.err != nil {
		t.Fatalf("campaign after a corrupt record: %v", r.err)
	}
}

func TestReadOnly(t *testing.T) {
	eps := testenv.Etcd(t)
	cluster := uniq("c")
	a := open(t, eps, testOptions(cluster, "a"))
	ro := open(t, eps, election.Options{Identity: election.Identity{Cluster: cluster, Node: "status"}, ReadOnly: true})
	if ro.LeaseID() != 0 {
		t.Fatalf("read-only LeaseID %x", ro.LeaseID())
	}
	if a.LeaseID() == 0 {
		t.Fatal("LeaseID 0 for a session")
	}
	ctx := ctxT(t, 10*time.Second)
	_, err := ro.Campaign(ctx, "q", nil)
	mustIs(t, err, election.ErrReadOnly)
	mustIs(t, ro.SetMember(ctx, election.RoleFollower, nil), election.ErrReadOnly)
	_, err = ro.Leader(ctx, "q")
	mustIs(t, err, election.ErrNoLeader)
	if recs, err := ro.Leaders(ctx); err != nil || len(recs) != 0 {
		t.Fatalf("Leaders = %v, %v", recs, err)
	}
	mustCampaign(t, a, "q", 5*time.Second)
	if err := ro.RequestStepDown(ctx, "q", "a"); err != nil {
		t.Fatalf("read-only step-down: %v", err)
	}
	if _, ok, err := ro.StepDownRequest(ctx, "q"); !ok || err != nil {
		t.Fatalf("StepDownRequest %v, %v", ok, err)
	}
	if !isOpen(ro.Done()) {
		t.Fatal("read-only Done closed before Close")
	}
	if err := ro.Close(ctx); err != nil {
		t.Fatal(err)
	}
	closedWithin(t, ro.Done(), 0, "read-only Done after Close")
}

func TestMembersVanishWithSession(t *testing.T) {
	eps := testenv.Etcd(t)
	cluster := uniq("c")
	a := open(t, eps, testOptions(cluster, "a"))
	b := open(t, eps, testOptions(cluster, "b"))
	ctx := ctxT(t, 10*time.Second)
	if err := a.SetMember(ctx, election.RoleFollower, []byte(`{"cfg":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := a.SetMember(ctx, election.RoleLeader, []byte(`{"cfg":2}`)); err != nil {
		t.Fatal(err)
	}
	if err := b.SetMember(ctx, election.RoleFollower, nil); err != nil {
		t.Fatal(err)
	}
	ms, err := b.Members(ctx)
	if err != nil || len(ms) != 2 || ms[0].Node != "a" || ms[0].Role != election.RoleLeader ||
		string(ms[0].Payload) != `{"cfg":2}` || ms[0].Cluster != cluster || ms[0].PID != 4242 || ms[1].Node != "b" {
		t.Fatalf("Members = %+v, %v", ms, err)
	}
	if _, err := admin(t, eps).Revoke(ctx, clientv3.LeaseID(a.LeaseID())); err != nil {
		t.Fatal(err)
	}
	ms, err = b.Members(ctx)
	if err != nil || len(ms) != 1 || ms[0].Node != "b" {
		t.Fatalf("Members after a's session ended = %+v, %v", ms, err)
	}
}

func TestChanges(t *testing.T) {
	eps := testenv.Etcd(t)
	cluster := uniq("c")
	a := open(t, eps, testOptions(cluster, "a"))
	ro := open(t, eps, election.Options{Identity: election.Identity{Cluster: cluster, Node: "watch"}, ReadOnly: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := ro.Changes(ctx)
	expect := func(what string) {
		t.Helper()
		select {
		case _, ok := <-ch:
			if !ok {
				t.Fatalf("%s: Changes closed", what)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("%s: no wake-up", what)
		}
	}
	// Changes pins its start revision: a change right after it returns
	// is seen.
	if err := a.SetMember(ctxT(t, time.Second), election.RoleFollower, nil); err != nil {
		t.Fatal(err)
	}
	expect("member record")
	l := mustCampaign(t, a, "q", 5*time.Second)
	expect("leader elected")
	if err := l.Publish(ctxT(t, time.Second), []byte("p")); err != nil {
		t.Fatal(err)
	}
	expect("record published")
	if err := l.Resign(ctxT(t, time.Second)); err != nil {
		t.Fatal(err)
	}
	expect("leader resigned")
	cancel()
	pollUntil(t, 2*time.Second, "Changes closed after cancel", func() bool {
		select {
		case _, ok := <-ch:
			return !ok
		default:
			return false
		}
	})
	// Closing the backend closes the channel too.
	ch2 := ro.Changes(context.Background())
	if err := ro.Close(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	for range ch2 {
	}
}
