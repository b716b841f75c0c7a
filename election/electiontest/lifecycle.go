package electiontest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/regentd/regent/election"
)

// manyQueues is how many queues testManyQueues leads from one replica, and
// manyQueuesBound how long campaigning for all of them may take.
const (
	manyQueues      = 200
	manyQueuesBound = 10 * time.Second
)

// testManyQueues leads 200 queues from one replica, campaigning for all at
// once as a supervisor does: it must be quick, use a bounded number of
// connections, and keep every leadership across renewals.
func testManyQueues(e *env) {
	t := e.t
	a := e.replica("a")
	reader := e.reader()
	idle := e.h.Connections(t, e.cluster, "a")

	ls := make([]election.Leadership, manyQueues)
	errs := make([]error, manyQueues)
	ctx := e.ctx()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range manyQueues {
		wg.Go(func() {
			ls[i], errs[i] = a.Campaign(ctx, fmt.Sprintf("q%03d", i), payload(i))
		})
	}
	wg.Wait()
	took := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("campaigns: %v", err)
	}
	t.Logf("%d uncontended campaigns at once from one replica: %v (%v per queue)",
		manyQueues, took, took/manyQueues)
	if took > manyQueuesBound {
		t.Errorf("campaigning for %d queues took %v, more than %v", manyQueues, took, manyQueuesBound)
	}

	checkConnections := func(when string) {
		n := e.h.Connections(t, e.cluster, "a")
		t.Logf("connections of the replica %s: %d (idle: %d, at most %d)", when, n, idle, e.h.MaxConnections())
		if n >= 0 && (n < 1 || n > e.h.MaxConnections()) {
			t.Errorf("replica leading %d queues holds %d connections %s, want 1..%d",
				manyQueues, n, when, e.h.MaxConnections())
		}
	}
	checkConnections("after the campaigns")

	recs, err := reader.Leaders(ctx)
	if err != nil {
		t.Fatalf("leaders: %v", err)
	}
	if len(recs) != manyQueues {
		t.Errorf("reader sees %d leader records, want %d", len(recs), manyQueues)
	}
	for _, r := range recs {
		if r.Node != "a" || r.Err != nil {
			t.Errorf("record %+v, want led by a", r)
			break
		}
	}

	// Every leadership survives renewals of the one shared session.
	for range 2 {
		select {
		case <-ls[0].Renewed():
		case <-time.After(LeaseTTL):
			t.Fatalf("no renewal within %v", LeaseTTL)
		}
	}
	for i, l := range ls {
		if isClosed(l.Done()) {
			t.Fatalf("leadership of q%03d lost with a healthy session", i)
		}
	}
	checkConnections("after renewals")
}

// testCampaignContext checks that Campaign returns promptly with ctx.Err()
// when its context ends, and that an abandoned candidacy leaves nothing
// behind that would stop another replica from winning.
func testCampaignContext(e *env) {
	t := e.t
	a, b, c := e.replica("a"), e.replica("b"), e.replica("c")
	la := e.campaign(a, "q", payload("a"))

	// Cancelled while waiting.
	p := e.campaignAsync(b, "q", payload("b"))
	p.blocked(t, "a leads")
	cancelled := time.Now()
	p.stop()
	closedWithin(t, p.done, prompt, "Campaign after its context was cancelled")
	if !errors.Is(p.err, context.Canceled) {
		t.Errorf("cancelled campaign returned %v, want context.Canceled", p.err)
	}
	t.Logf("cancel → Campaign returned: %v", p.at.Sub(cancelled))

	// Deadline while waiting.
	const wait = 300 * time.Millisecond
	dctx, dcancel := context.WithTimeout(context.Background(), wait)
	defer dcancel()
	start := time.Now()
	if _, err := b.Campaign(dctx, "q", payload("b")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("campaign past its deadline returned %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > wait+prompt {
		t.Errorf("campaign with a %v deadline returned after %v", wait, took)
	}

	// Already cancelled.
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	start = time.Now()
	if _, err := b.Campaign(cctx, "q", payload("b")); !errors.Is(err, context.Canceled) {
		t.Errorf("campaign with a cancelled context returned %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > prompt {
		t.Errorf("campaign with a cancelled context returned after %v", took)
	}

	// The abandoned candidacies of b do not stand in c's way.
	pc := e.campaignAsync(c, "q", payload("c"))
	pc.blocked(t, "a leads")
	e.resign(la)
	lc := pc.won(t, prompt)
	if rec := e.leader(e.reader(), "q"); rec.Node != "c" || rec.Term != lc.Term() {
		t.Errorf("record %s@%d after c won, want c@%d", rec.Node, rec.Term, lc.Term())
	}

	// And b can still campaign.
	pb := e.campaignAsync(b, "q", payload("b"))
	pb.blocked(t, "c leads")
	e.resign(lc)
	pb.won(t, prompt)
}

// testClose checks that Close resigns (a follower wins at once), ends the
// leaderships and blocked calls, is idempotent, and that every later call
// fails with ErrClosed.
func testClose(e *env) {
	t := e.t
	a, b := e.replica("a"), e.replica("b")
	reader := e.reader()
	la := e.campaign(a, "q", payload("a"))
	e.campaign(b, "q2", payload("b"))
	blockedOnA := e.campaignAsync(a, "q2", payload("a"))
	follower := e.campaignAsync(b, "q", payload("b"))
	blockedOnA.blocked(t, "b leads q2")

	closing := time.Now()
	if err := a.Close(e.ctx()); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := a.Close(e.ctx()); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if !isClosed(la.Done()) {
		t.Error("leadership's Done still open after Close returned")
	}
	if !isClosed(a.Done()) {
		t.Error("backend's Done still open after Close returned")
	}
	closedWithin(t, blockedOnA.done, prompt, "a Campaign blocked during Close")
	if !errors.Is(blockedOnA.err, election.ErrClosed) {
		t.Errorf("campaign blocked during Close returned %v, want ErrClosed", blockedOnA.err)
	}
	follower.won(t, prompt)
	t.Logf("Close of the leader → follower leads: %v", follower.at.Sub(closing))

	checkClosed(e, a, "closed replica", true)
	checkLost(e, la, "leadership of a closed backend")
	if err := reader.Close(e.ctx()); err != nil {
		t.Fatalf("close reader: %v", err)
	}
	if err := reader.Close(e.ctx()); err != nil {
		t.Fatalf("second close of reader: %v", err)
	}
	checkClosed(e, reader, "closed reader", false)
}

// checkClosed checks that every call on the closed backend b fails with
// ErrClosed and that Changes returns a closed channel. On a read-only
// backend (not campaigner) Campaign and SetMember return ErrReadOnly
// instead: it refuses them for that reason first, in every state.
func checkClosed(e *env, b election.Backend, what string, campaigner bool) {
	t := e.t
	t.Helper()
	ctx := e.ctx()
	check := func(call string, err error) {
		if !errors.Is(err, election.ErrClosed) {
			t.Errorf("%s: %s returned %v, want ErrClosed", what, call, err)
		}
	}
	_, err := b.Campaign(ctx, "q3", payload("x"))
	errSetMember := b.SetMember(ctx, election.RoleFollower, payload("x"))
	if campaigner {
		check("Campaign", err)
		check("SetMember", errSetMember)
	} else {
		if !errors.Is(err, election.ErrReadOnly) {
			t.Errorf("%s: Campaign returned %v, want ErrReadOnly", what, err)
		}
		if !errors.Is(errSetMember, election.ErrReadOnly) {
			t.Errorf("%s: SetMember returned %v, want ErrReadOnly", what, errSetMember)
		}
	}
	_, err = b.Leader(ctx, "q")
	check("Leader", err)
	_, err = b.Leaders(ctx)
	check("Leaders", err)
	_, err = b.Members(ctx)
	check("Members", err)
	check("RequestStepDown", b.RequestStepDown(ctx, "q", ""))
	_, _, err = b.StepDownRequest(ctx, "q")
	check("StepDownRequest", err)
	_, err = b.StepDownRequests(ctx)
	check("StepDownRequests", err)
	_, err = b.History(ctx, "q", 5)
	check("History", err)
	check("ReleaseTerm", b.ReleaseTerm(ctx, "q", 1))
	closedWithin(t, b.Done(), prompt, what+": Done")
	ch := b.Changes(ctx)
	select {
	case _, ok := <-ch:
		if ok {
			// A last wake-up may be pending; the channel must close next.
			select {
			case _, ok = <-ch:
			case <-time.After(prompt):
			}
		}
		if ok {
			t.Errorf("%s: Changes channel open", what)
		}
	case <-time.After(prompt):
		t.Errorf("%s: Changes channel not closed", what)
	}
}
