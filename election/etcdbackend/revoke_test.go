package etcdbackend

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regentd/regent/internal/testenv"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// holdBeats makes b's campaigns' heartbeat watches hold back every event
// written after the revision stored in after (0: none held): those events
// are never delivered, as if the heartbeat watch lagged behind the leader
// key's. The returned channel receives a value whenever such a watch
// starts.
func holdBeats(b *Backend, after *atomic.Int64) <-chan struct{} {
	started := make(chan struct{}, 1)
	b.beatWatch = func(ctx context.Context, in clientv3.WatchChan) clientv3.WatchChan {
		out := make(chan clientv3.WatchResponse)
		go func() {
			defer close(out)
			for resp := range in {
				if h := after.Load(); h > 0 && len(resp.Events) > 0 {
					var kept []*clientv3.Event
					for _, ev := range resp.Events {
						if ev.Kv.ModRevision <= h {
							kept = append(kept, ev)
						}
					}
					if len(kept) == 0 {
						continue
					}
					resp.Events = kept
				}
				select {
				case out <- resp:
				case <-ctx.Done():
					return
				}
			}
		}()
		select {
		case started <- struct{}{}:
		default:
		}
		return out
	}
	return started
}

// An administrator revokes a leader's lease just after one of its
// renewals, before the follower's heartbeat watch delivered the heartbeat
// that followed it (the leader key's watch and the heartbeat's deliver
// independently). The follower must hold back from that heartbeat, not
// from the last one its watch delivered: it wins neither before the
// leader's ValidUntil nor before that heartbeat's write + TTL.
func TestRevokeBeforeHeartbeatDeliveredHoldsBack(t *testing.T) {
	eps := testenv.Etcd(t)
	cluster := uniq("c")
	a := open(t, eps, testOptions(cluster, "a"))
	b := open(t, eps, testOptions(cluster, "b"))
	cli := admin(t, eps)
	var holdAfter atomic.Int64
	watching := holdBeats(b, &holdAfter)

	la := mustCampaign(t, a, "q", 5*time.Second)
	beats := cli.Watch(ctxT(t, 30*time.Second), a.keys.heartbeat(a.LeaseID()))
	// nextBeat returns the revision of the next heartbeat written after
	// rev, and when this test saw it (after it was written).
	nextBeat := func(rev int64) (int64, time.Time) {
		t.Helper()
		timeout := time.After(3 * testRenew)
		for {
			select {
			case resp := <-beats:
				for _, ev := range resp.Events {
					if ev.Type == mvccpb.PUT && ev.Kv.ModRevision > rev {
						return ev.Kv.ModRevision, time.Now()
					}
				}
			case <-timeout:
				t.Fatalf("no heartbeat of a's after revision %d", rev)
			}
		}
	}

	waiting := campaignAsync(ctxT(t, 20*time.Second), b, "q")
	select {
	case <-watching:
	case <-time.After(5 * time.Second):
		t.Fatal("b does not watch a's heartbeats")
	}
	// b sees a few heartbeats, then none.
	nextBeat(0)
	nextBeat(0)
	resp, err := cli.Get(ctxT(t, 5*time.Second), "held")
	if err != nil {
		t.Fatalf("read revision: %v", err)
	}
	holdAfter.Store(resp.Header.Revision)
	// The renewal before the second heartbeat after the hold was sent
	// after the first was written: after the last heartbeat b was sent.
	rev, _ := nextBeat(resp.Header.Revision)
	_, beatAt := nextBeat(rev)
	if _, err := cli.Revoke(ctxT(t, 5*time.Second), clientv3.LeaseID(a.LeaseID())); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	revoked := time.Now()
	closedWithin(t, la.Done(), time.Second, "a's leadership Done after revoke")

	r := result(t, waiting, 3*testTTL)
	if r.err != nil {
		t.Fatalf("b: %v", r.err)
	}
	vu := la.ValidUntil()
	t.Logf("b won %s after the revoke; %s after a's ValidUntil, %s after the last heartbeat + TTL",
		r.at.Sub(revoked).Round(time.Millisecond), r.at.Sub(vu).Round(time.Millisecond),
		r.at.Sub(beatAt.Add(testTTL)).Round(time.Millisecond))
	if r.at.Before(vu) {
		t.Errorf("b won %s before a's ValidUntil", vu.Sub(r.at).Round(time.Millisecond))
	}
	if until := beatAt.Add(testTTL); r.at.Before(until) {
		t.Errorf("b won %s before a's last heartbeat + TTL", until.Sub(r.at).Round(time.Millisecond))
	}
	if d := r.at.Sub(revoked); d > testTTL+time.Second {
		t.Errorf("b won %s after the revoke, want about one TTL at most", d.Round(time.Millisecond))
	}
}

// beatsBefore moves a campaign's bound on the leader's last renewal to the
// moment the leader key was seen deleted exactly when a heartbeat written
// before the deletion was not seen, or when etcd cannot tell (the
// revision was compacted); campaigns share a read of one lease at one
// revision.
func TestBeatsBeforeDeletion(t *testing.T) {
	etcd := testenv.NewEtcd(t) // compacted below: not the shared member
	eps := etcd.Endpoints()
	b := open(t, eps, testOptions(uniq("c"), "b"))
	cli := admin(t, eps)
	c := &campaign{b: b, queue: "q", log: b.log}
	const lease = 0x1234
	put := func(key string) int64 {
		t.Helper()
		resp, err := cli.Put(ctxT(t, 5*time.Second), key, "x")
		if err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
		return resp.Header.Revision
	}
	hb := b.keys.heartbeat(lease)
	h1 := put(hb)
	x1 := put("other")
	h2 := put(hb)
	x2 := put("other")
	x3 := put("other")

	since := time.Now().Add(-time.Second)
	gone := time.Now()
	for _, tc := range []struct {
		name     string
		lease    int64
		beatRev  int64 // last heartbeat accounted for
		deleted  int64 // revision of the leader key's deletion
		compact  bool  // compact etcd at deleted first
		wantGone bool  // since moves to gone
	}{
		{"heartbeat not seen", lease, x1, x2, false, true},
		{"every heartbeat seen", lease, h2, x2, false, false},
		{"no heartbeat since the snapshot", lease, h1, x1 + 1, false, false},
		{"no heartbeat key", lease + 1, h1, x2, false, false},
		{"compacted", lease, x1, x3, true, true},
		// Read before the compaction: shared, not read again.
		{"shared", lease, h1, x1 + 1, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.compact {
				if _, err := cli.Compact(ctxT(t, 5*time.Second), tc.deleted); err != nil {
					t.Fatalf("compact: %v", err)
				}
			}
			seen := &observed{lease: tc.lease, since: since, gone: gone, beatRev: tc.beatRev}
			if err := c.beatsBefore(ctxT(t, 5*time.Second), seen, tc.deleted); err != nil {
				t.Fatalf("beatsBefore: %v", err)
			}
			switch {
			case tc.wantGone && !seen.since.Equal(gone):
				t.Errorf("since %v before the deletion seen, want the deletion's moment", gone.Sub(seen.since))
			case !tc.wantGone && !seen.since.Equal(since):
				t.Errorf("since moved by %v, want it unchanged", seen.since.Sub(since))
			}
		})
	}
}
