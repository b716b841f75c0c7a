package etcdbackend

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/internal/faultproxy"
	"github.com/regentd/regent/internal/testenv"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestResignHandsOverAtOnce(t *testing.T) {
	eps := testenv.Etcd(t)
	cluster := uniq("c")
	a := open(t, eps, testOptions(cluster, "a"))
	b := open(t, eps, testOptions(cluster, "b"))

	la := mustCampaign(t, a, "q", 5*time.Second)
	if got := la.ValidUntil(); time.Until(got) <= 0 || time.Until(got) > testTTL {
		t.Fatalf("ValidUntil in %s, want within the TTL", time.Until(got))
	}
	waiting := campaignAsync(ctxT(t, 20*time.Second), b, "q")
	rec, err := b.Leader(ctxT(t, 5*time.Second), "q")
	if err != nil || rec.Node != "a" || rec.Term != la.Term() || rec.Cluster != cluster || rec.Queue != "q" {
		t.Fatalf("Leader = %+v, %v; want node a, term %d", rec, err, la.Term())
	}
	select {
	case r := <-waiting:
		t.Fatalf("b won while a leads: %+v", r)
	default:
	}

	resigned := time.Now()
	if err := la.Resign(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("resign: %v", err)
	}
	closedWithin(t, la.Done(), time.Second, "a's Done after resign")
	r := result(t, waiting, 5*time.Second)
	if r.err != nil {
		t.Fatalf("b: %v", r.err)
	}
	if d := r.at.Sub(resigned); d > 500*time.Millisecond {
		t.Errorf("b won %s after a resigned, want well under the TTL", d)
	}
	if r.l.Term() <= la.Term() {
		t.Errorf("term %d after %d, want it to grow", r.l.Term(), la.Term())
	}
	if err := la.Resign(ctxT(t, time.Second)); err != nil {
		t.Errorf("second resign: %v", err)
	}
	mustIs(t, la.Publish(ctxT(t, time.Second), []byte("x")), election.ErrNotLeader)

	rec, err = a.Leader(ctxT(t, 5*time.Second), "q")
	if err != nil || rec.Node != "b" || rec.Term != r.l.Term() || string(rec.Payload) != `{"from":"b"}` || rec.PID != 4242 || rec.Host != "testhost" {
		t.Fatalf("Leader = %+v, %v; want b's record", rec, err)
	}
	if err := r.l.Publish(ctxT(t, 5*time.Second), []byte("new")); err != nil {
		t.Fatalf("publish: %v", err)
	}
	rec, err = a.Leader(ctxT(t, 5*time.Second), "q")
	if err != nil || string(rec.Payload) != "new" || rec.Term != r.l.Term() {
		t.Fatalf("after publish Leader = %+v, %v", rec, err)
	}
}

func TestRenewedMovesValidUntil(t *testing.T) {
	eps := testenv.Etcd(t)
	a := open(t, eps, testOptions(uniq("c"), "a"))
	l := mustCampaign(t, a, "q", 5*time.Second)
	before := l.ValidUntil()
	select {
	case <-l.Renewed():
	case <-time.After(3 * testRenew):
		t.Fatal("no renewal signalled")
	}
	if !l.ValidUntil().After(before) {
		t.Fatalf("ValidUntil %v did not move past %v", l.ValidUntil(), before)
	}
}

func TestLeaseRevokedFromOutside(t *testing.T) {
	eps := testenv.Etcd(t)
	cluster := uniq("c")
	a := open(t, eps, testOptions(cluster, "a"))
	b := open(t, eps, testOptions(cluster, "b"))
	la := mustCampaign(t, a, "q", 5*time.Second)
	waiting := campaignAsync(ctxT(t, 20*time.Second), b, "q")
	// Let b watch a few heartbeats.
	pollUntil(t, 5*time.Second, "a renews", func() bool {
		select {
		case <-la.Renewed():
			return true
		default:
			return false
		}
	})

	if _, err := admin(t, eps).Revoke(ctxT(t, 5*time.Second), clientv3.LeaseID(a.LeaseID())); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	revoked := time.Now()
	lostAt := closedWithin(t, la.Done(), time.Second, "a's leadership Done after revoke")
	if d := lostAt.Sub(revoked); d > time.Second {
		t.Errorf("a's leadership ended %s after the revoke", d)
	}
	closedWithin(t, a.Done(), 2*time.Second, "a's backend Done after revoke")
	mustIs(t, la.Publish(ctxT(t, time.Second), nil), election.ErrNotLeader)
	mustIs(t, a.SetMember(ctxT(t, time.Second), election.RoleFollower, nil), election.ErrSessionLost)
	_, err := a.Campaign(ctxT(t, time.Second), "other", nil)
	mustIs(t, err, election.ErrSessionLost)

	// b must not win while a may still trust its leadership.
	r := result(t, waiting, 2*testTTL)
	if r.err != nil {
		t.Fatalf("b: %v", r.err)
	}
	if vu := la.ValidUntil(); r.at.Before(vu) {
		t.Fatalf("b won %s before a's ValidUntil", vu.Sub(r.at))
	}
	if d := r.at.Sub(revoked); d > testTTL+time.Second {
		t.Errorf("b won %s after the revoke, want about one TTL at most", d)
	}
}

func TestKeyDeletedByHandHoldsBack(t *testing.T) {
	eps := testenv.Etcd(t)
	cluster := uniq("c")
	a := open(t, eps, testOptions(cluster, "a"))
	b := open(t, eps, testOptions(cluster, "b"))
	la := mustCampaign(t, a, "q", 5*time.Second)
	waiting := campaignAsync(ctxT(t, 20*time.Second), b, "q")
	pollUntil(t, 5*time.Second, "a renews", func() bool {
		select {
		case <-la.Renewed():
			return true
		default:
			return false
		}
	})
	if _, err := admin(t, eps).Delete(ctxT(t, 5*time.Second), a.keys.leader("q")); err != nil {
		t.Fatalf("delete: %v", err)
	}
	closedWithin(t, la.Done(), time.Second, "a's leadership Done after delete")
	if !isOpen(a.Done()) {
		t.Fatal("a's session ended; only its leadership should have")
	}
	r := result(t, waiting, 2*testTTL)
	if r.err != nil {
		t.Fatalf("b: %v", r.err)
	}
	if vu := la.ValidUntil(); r.at.Before(vu) {
		t.Fatalf("b won %s before a's ValidUntil", vu.Sub(r.at))
	}
	// a, asked again, waits for b like any follower.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := a.Campaign(ctx, "q", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a campaign while b leads: %v, want a deadline", err)
	}
}

func TestCutOffLeaderLosesAtValidUntil(t *testing.T) {
	eps := testenv.Etcd(t)
	cluster := uniq("c")
	px, pxEps := newProxy(t, eps)
	a := open(t, pxEps, testOptions(cluster, "a"))
	b := open(t, eps, testOptions(cluster, "b"))
	la := mustCampaign(t, a, "q", 5*time.Second)
	waiting := campaignAsync(ctxT(t, 20*time.Second), b, "q")

	px.SetMode(faultproxy.Blackhole)
	vu := la.ValidUntil()
	lostAt := closedWithin(t, la.Done(), 2*testTTL, "a's leadership Done while cut off")
	if lostAt.Before(vu) {
		t.Fatalf("a gave up %s before its ValidUntil", vu.Sub(lostAt))
	}
	if d := lostAt.Sub(la.ValidUntil()); d > 500*time.Millisecond {
		t.Errorf("a gave up %s after its ValidUntil", d)
	}
	// The crash failover: b wins once etcd expires a's lease, about one
	// TTL after a's last renewal, and never before a's ValidUntil.
	r := result(t, waiting, 3*testTTL)
	if r.err != nil {
		t.Fatalf("b: %v", r.err)
	}
	if r.at.Before(la.ValidUntil()) {
		t.Fatalf("b won %s before a's ValidUntil", la.ValidUntil().Sub(r.at))
	}
	// etcd checks expiries every 500 ms; a follower that held back a
	// TTL from the deletion would win a whole TTL later.
	if d := r.at.Sub(la.ValidUntil()); d > testTTL-200*time.Millisecond {
		t.Errorf("b won %s after a's ValidUntil, want about etcd's expiry delay", d)
	}
	px.SetMode(faultproxy.Pass)
	closedWithin(t, a.Done(), 5*time.Second, "a's session Done once etcd answers again")
}

func TestShortCutIsSurvived(t *testing.T) {
	eps := testenv.Etcd(t)
	px, pxEps := newProxy(t, eps)
	a := open(t, pxEps, testOptions(uniq("c"), "a"))
	la := mustCampaign(t, a, "q", 5*time.Second)
	px.SetMode(faultproxy.Blackhole)
	cut := time.Now()
	for time.Since(cut) < testTTL/3 {
		if !isOpen(la.Done()) {
			t.Fatal("leadership lost during a short cut")
		}
		time.Sleep(20 * time.Millisecond)
	}
	px.SetMode(faultproxy.Pass)
	select {
	case <-la.Renewed():
	case <-la.Done():
		t.Fatal("leadership lost after a short cut")
	case <-time.After(testTTL):
		t.Fatal("no renewal after the cut healed")
	}
	if !isOpen(a.Done()) {
		t.Fatal("session lost after a short cut")
	}
}

func TestCampaignEndsWithSessionAndContext(t *testing.T) {
	eps := testenv.Etcd(t)
	cluster := uniq("c")
	a := open(t, eps, testOptions(cluster, "a"))
	b := open(t, eps, testOptions(cluster, "b"))
	mustCampaign(t, a, "q", 5*time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	waiting := campaignAsync(ctx, b, "q")
	pollUntil(t, 5*time.Second, "b campaigns", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.queues["q"] != nil && b.queues["q"].campaigning
	})
	_, err := b.Campaign(ctxT(t, 5*time.Second), "q", nil)
	mustIs(t, err, election.ErrBusy)
	cancel()
	r := result(t, waiting, 2*time.Second)
	if !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled campaign: %v", r.err)
	}

	// etcd issue 19597: a campaign must end with its session.
	waiting = campaignAsync(ctxT(t, 20*time.Second), b, "q")
	if _, err := admin(t, eps).Revoke(ctxT(t, 5*time.Second), clientv3.LeaseID(b.LeaseID())); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	r = result(t, waiting, 2*time.Second)
	mustIs(t, r.err, election.ErrSessionLost)
}

func TestCloseResignsAndWakesFollowers(t *testing.T) {
	eps := testenv.Etcd(t)
	cluster := uniq("c")
	a := open(t, eps, testOptions(cluster, "a"))
	b := open(t, eps, testOptions(cluster, "b"))
	la := mustCampaign(t, a, "q", 5*time.Second)
	if err := a.SetMember(ctxT(t, 5*time.Second), election.RoleLeader, []byte("cfg")); err != nil {
		t.Fatalf("set member: %v", err)
	}
	waiting := campaignAsync(ctxT(t, 20*time.Second), b, "q")
	mustCampaign(t, b, "x", 5*time.Second)
	blocked := campaignAsync(ctxT(t, 20*time.Second), a, "x")

	closed := time.Now()
	if err := a.Close(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := a.Close(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("second close: %v", err)
	}
	closedWithin(t, la.Done(), 0, "leadership Done after Close")
	closedWithin(t, a.Done(), 0, "backend Done after Close")
	mustIs(t, result(t, blocked, time.Second).err, election.ErrClosed)
	r := result(t, waiting, 5*time.Second)
	if r.err != nil {
		t.Fatalf("b: %v", r.err)
	}
	if d := r.at.Sub(closed); d > 500*time.Millisecond {
		t.Errorf("b won %s after a closed, want at once", d)
	}
	members, err := b.Members(ctxT(t, 5*time.Second))
	if err != nil || len(members) != 0 {
		t.Fatalf("members after close = %+v, %v; want none", members, err)
	}
	ttl, err := admin(t, eps).TimeToLive(ctxT(t, 5*time.Second), clientv3.LeaseID(a.LeaseID()))
	if err != nil || ttl.TTL != -1 {
		t.Fatalf("a's lease after close: %+v, %v; want revoked", ttl, err)
	}

	ctx := ctxT(t, time.Second)
	_, err = a.Campaign(ctx, "q", nil)
	mustIs(t, err, election.ErrClosed)
	_, err = a.Leader(ctx, "q")
	mustIs(t, err, election.ErrClosed)
	_, err = a.Leaders(ctx)
	mustIs(t, err, election.ErrClosed)
	_, err = a.Members(ctx)
	mustIs(t, err, election.ErrClosed)
	mustIs(t, a.SetMember(ctx, election.RoleFollower, nil), election.ErrClosed)
	mustIs(t, a.RequestStepDown(ctx, "q", ""), election.ErrClosed)
	_, _, err = a.StepDownRequest(ctx, "q")
	mustIs(t, err, election.ErrClosed)
	mustIs(t, a.ReleaseTerm(ctx, "q", 1), election.ErrClosed)
	if _, ok := <-a.Changes(ctx); ok {
		t.Fatal("Changes after Close sent a value")
	}
}

func TestReleaseTerm(t *testing.T) {
	eps := testenv.Etcd(t)
	cluster := uniq("c")
	a := open(t, eps, testOptions(cluster, "a"))
	b := open(t, eps, testOptions(cluster, "b"))
	ro := open(t, eps, election.Options{Identity: election.Identity{Cluster: cluster, Node: "guard"}, ReadOnly: true})
	la := mustCampaign(t, a, "q", 5*time.Second)
	waiting := campaignAsync(ctxT(t, 20*time.Second), b, "q")

	if err := ro.ReleaseTerm(ctxT(t, 5*time.Second), "q", la.Term()+1000); err != nil {
		t.Fatalf("release of a wrong term: %v", err)
	}
	if _, err := ro.Leader(ctxT(t, 5*time.Second), "q"); err != nil {
		t.Fatalf("leader after a wrong release: %v", err)
	}
	released := time.Now()
	if err := ro.ReleaseTerm(ctxT(t, 5*time.Second), "q", la.Term()); err != nil {
		t.Fatalf("release: %v", err)
	}
	closedWithin(t, la.Done(), time.Second, "a's Done after release")
	r := result(t, waiting, 5*time.Second)
	if r.err != nil {
		t.Fatalf("b: %v", r.err)
	}
	if d := r.at.Sub(released); d > 500*time.Millisecond {
		t.Errorf("b won %s after the release, want at once", d)
	}
}

func TestStepDownToNode(t *testing.T) {
	eps := testenv.Etcd(t)
	cluster := uniq("c")
	a := open(t, eps, testOptions(cluster, "a"))
	b := open(t, eps, testOptions(cluster, "b"))
	c := open(t, eps, testOptions(cluster, "c"))
	la := mustCampaign(t, a, "q", 5*time.Second)
	ctx := ctxT(t, 20*time.Second)
	wb := campaignAsync(ctx, b, "q")
	wc := campaignAsync(ctx, c, "q")
	changes := a.Changes(ctx)

	if err := b.RequestStepDown(ctxT(t, 5*time.Second), "nobody-leads", ""); !errors.Is(err, election.ErrNoLeader) {
		t.Fatalf("step-down of a queue without leader: %v", err)
	}
	if err := b.RequestStepDown(ctxT(t, 5*time.Second), "q", "c"); err != nil {
		t.Fatalf("request step-down: %v", err)
	}
	select {
	case <-changes:
	case <-time.After(2 * time.Second):
		t.Fatal("Changes did not wake on the step-down request")
	}
	req, ok, err := a.StepDownRequest(ctxT(t, 5*time.Second), "q")
	if err != nil || !ok || req.To != "c" || req.Term != la.Term() || req.Queue != "q" || time.Since(req.RequestedAt) > time.Minute {
		t.Fatalf("StepDownRequest = %+v, %v, %v", req, ok, err)
	}
	// What the supervisor does: the leader resigns, b holds back, c wins.
	if err := la.Resign(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("resign: %v", err)
	}
	r := result(t, wc, 3*time.Second)
	if r.err != nil {
		t.Fatalf("c: %v", r.err)
	}
	select {
	case r := <-wb:
		t.Fatalf("b won or failed despite the step-down to c: %+v", r)
	default:
	}
	if _, ok, err := a.StepDownRequest(ctxT(t, 5*time.Second), "q"); ok || err != nil {
		t.Fatalf("step-down request still there after c won: %v, %v", ok, err)
	}
}

func TestStepDownWithoutTargetHoldsBackOldLeader(t *testing.T) {
	eps := testenv.Etcd(t)
	cluster := uniq("c")
	a := open(t, eps, testOptions(cluster, "a"))
	b := open(t, eps, testOptions(cluster, "b"))
	la := mustCampaign(t, a, "q", 5*time.Second)
	if err := b.RequestStepDown(ctxT(t, 5*time.Second), "q", ""); err != nil {
		t.Fatalf("request step-down: %v", err)
	}
	if err := la.Resign(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("resign: %v", err)
	}
	// a campaigns again at once, but b, who did not lead, must win.
	ctx := ctxT(t, 20*time.Second)
	wa := campaignAsync(ctx, a, "q")
	r := result(t, campaignAsync(ctx, b, "q"), 3*time.Second)
	if r.err != nil {
		t.Fatalf("b: %v", r.err)
	}
	select {
	case r := <-wa:
		t.Fatalf("a returned despite stepping down: %+v", r)
	default:
	}
}

func TestManyQueuesOneLease(t *testing.T) {
	eps := testenv.Etcd(t)
	cluster := uniq("c")
	a := open(t, eps, testOptions(cluster, "a"))
	const n = 50
	ls := make([]election.Leadership, n)
	for i := range ls {
		ls[i] = mustCampaign(t, a, "q"+string(rune('A'+i%26))+string(rune('a'+i/26)), 5*time.Second)
	}
	recs, err := a.Leaders(ctxT(t, 5*time.Second))
	if err != nil || len(recs) != n {
		t.Fatalf("Leaders: %d records, %v; want %d", len(recs), err, n)
	}
	for i := 1; i < len(recs); i++ {
		if recs[i-1].Queue >= recs[i].Queue {
			t.Fatalf("Leaders not sorted: %s before %s", recs[i-1].Queue, recs[i].Queue)
		}
	}
	leases, err := admin(t, eps).Leases(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatalf("leases: %v", err)
	}
	mine := 0
	for _, l := range leases.Leases {
		if int64(l.ID) == a.LeaseID() {
			mine++
		}
	}
	if mine != 1 {
		t.Fatalf("a's lease listed %d times", mine)
	}
	// Every leader key is on that one lease.
	resp, err := admin(t, eps).Get(ctxT(t, 5*time.Second), a.keys.queues(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if _, ok := a.keys.queueOfLeader(string(kv.Key)); ok && kv.Lease != a.LeaseID() {
			t.Fatalf("%s on lease %x, want %x", kv.Key, kv.Lease, a.LeaseID())
		}
	}
}

// A rebalancing replica asks for dozens of step-downs at once: they share
// one lease instead of adding a lease each to etcd.
func TestStepDownRequestsShareALease(t *testing.T) {
	eps := testenv.Etcd(t)
	cluster := uniq("c")
	a := open(t, eps, testOptions(cluster, "a"))
	queues := []string{"q1", "q2", "q3", "q4", "q5"}
	for _, q := range queues {
		mustCampaign(t, a, q, 5*time.Second)
	}
	for _, q := range queues {
		if err := a.RequestStepDown(ctxT(t, 5*time.Second), q, "b"); err != nil {
			t.Fatalf("request step-down of %s: %v", q, err)
		}
	}
	cli := admin(t, eps)
	leases := map[int64]bool{}
	for _, q := range queues {
		resp, err := cli.Get(ctxT(t, 5*time.Second), a.keys.stepDown(q))
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("step-down key of %s: %v, %v", q, resp, err)
		}
		if resp.Kvs[0].Lease == 0 {
			t.Fatalf("step-down request of %s has no lease", q)
		}
		leases[resp.Kvs[0].Lease] = true
	}
	// Five requests within a second or two (a loaded machine may cross one
	// sharing window): at most two leases, never one per request.
	if len(leases) > 2 {
		t.Fatalf("%d step-down requests used %d leases, want them shared", len(queues), len(leases))
	}
}

// A campaign that starts while the leader is already cut off (it never
// watched the leader's heartbeats) bounds the leader's last renewal by the
// lease's remaining TTL in etcd, instead of holding back a whole TTL from
// when it finds the key gone: it wins about one TTL after the leader's
// last renewal, never before the leader's ValidUntil.
func TestLateCampaignBoundsLastRenewal(t *testing.T) {
	const ttl = 5 * time.Second
	eps := testenv.Etcd(t)
	cluster := uniq("c")
	px, pxEps := newProxy(t, eps)
	optsA, optsB := testOptions(cluster, "a"), testOptions(cluster, "b")
	for _, o := range []*election.Options{&optsA, &optsB} {
		o.LeaseTTL, o.RenewInterval = ttl, time.Second
	}
	a := open(t, pxEps, optsA)
	b := open(t, eps, optsB)
	la := mustCampaign(t, a, "q", 5*time.Second)

	px.SetMode(faultproxy.Blackhole)
	cut := time.Now()
	// Campaign only after the cut, so b never sees a heartbeat of a's.
	time.Sleep(3 * time.Second)
	started := time.Now()
	r := result(t, campaignAsync(ctxT(t, 20*time.Second), b, "q"), 3*ttl)
	if r.err != nil {
		t.Fatalf("b: %v", r.err)
	}
	vu := la.ValidUntil()
	t.Logf("b won %s after the cut, %s after a's ValidUntil (campaign started %s after the cut)",
		r.at.Sub(cut).Round(time.Millisecond), r.at.Sub(vu).Round(time.Millisecond), started.Sub(cut).Round(time.Millisecond))
	if r.at.Before(vu) {
		t.Fatalf("b won %s before a's ValidUntil", vu.Sub(r.at))
	}
	// Holding back a whole TTL from the campaign's start would win at
	// started + ttl or later; the bound from the lease's remaining TTL is
	// at most one second after a's last renewal.
	if !r.at.Before(started.Add(ttl - 500*time.Millisecond)) {
		t.Errorf("b won %s after its campaign started; want well under a TTL (%s): a's last renewal was %s before it",
			r.at.Sub(started).Round(time.Millisecond), ttl, started.Sub(cut).Round(time.Millisecond))
	}
	px.SetMode(faultproxy.Pass)
}
