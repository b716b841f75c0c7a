package electiontest

import (
	"context"
	"errors"
	"time"

	"github.com/regentd/regent/election"
)

// checkLost checks the calls on a leadership that is Done: Publish
// returns ErrNotLeader, Resign returns nil (twice: it is idempotent).
func checkLost(e *env, l election.Leadership, how string) {
	t := e.t
	t.Helper()
	if !isClosed(l.Done()) {
		t.Fatalf("%s: Done still open", how)
	}
	if err := l.Publish(e.ctx(), payload("late")); !errors.Is(err, election.ErrNotLeader) {
		t.Errorf("%s: Publish returned %v, want ErrNotLeader", how, err)
	}
	for i := range 2 {
		if err := l.Resign(e.ctx()); err != nil {
			t.Errorf("%s: Resign #%d returned %v, want nil", how, i+1, err)
		}
	}
}

// testLostLeadership checks Publish and Resign on leaderships that ended
// in each way a live backend sees: resigned, released by ReleaseTerm
// (then taken by another replica, whose term the late Resign must not
// touch), and ended by Close.
func testLostLeadership(e *env) {
	t := e.t
	a, b := e.replica("a"), e.replica("b")
	reader := e.reader()

	la := e.campaign(a, "q", payload("a"))
	e.resign(la)
	checkLost(e, la, "resigned leadership")

	la = e.campaign(a, "q", payload("a"))
	next := e.campaignAsync(b, "q", payload("b"))
	next.blocked(t, "a leads")
	if err := reader.ReleaseTerm(e.ctx(), "q", la.Term()); err != nil {
		t.Fatalf("release term %d: %v", la.Term(), err)
	}
	closedWithin(t, la.Done(), prompt, "Done of a leadership whose term was released")
	lb := next.won(t, prompt)
	checkLost(e, la, "released leadership")
	if isClosed(lb.Done()) {
		t.Error("the next leader lost its leadership to the old leader's late Resign")
	}
	if rec := e.leader(reader, "q"); rec.Node != "b" || rec.Term != lb.Term() {
		t.Errorf("record %s@%d after the old leader's late Resign, want b@%d", rec.Node, rec.Term, lb.Term())
	}

	lc := e.campaign(a, "q2", payload("a"))
	if err := a.Close(e.ctx()); err != nil {
		t.Fatalf("close: %v", err)
	}
	checkLost(e, lc, "leadership of a closed backend")
}

// testSessionLost checks that a read-write backend whose session was
// killed is spent: every call, reads included, returns ErrSessionLost,
// its Changes channels close, its leaderships are lost (Publish
// ErrNotLeader, Resign nil), and Close still works.
func testSessionLost(e *env) {
	t := e.t
	a := e.replica("a")
	la := e.campaign(a, "q", payload("a"))
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	before := a.Changes(watchCtx)

	e.h.KillSession(t, a)
	closedWithin(t, la.Done(), LeaseTTL+time.Second, "the leadership's Done after its session was killed")
	closedWithin(t, a.Done(), LeaseTTL+time.Second, "the backend's Done after its session was killed")
	validUntil := la.ValidUntil()
	checkLost(e, la, "leadership of a killed session")

	ctx := e.ctx()
	check := func(call string, err error) {
		t.Helper()
		if !errors.Is(err, election.ErrSessionLost) {
			t.Errorf("after session loss: %s returned %v, want ErrSessionLost", call, err)
		}
	}
	_, err := a.Campaign(ctx, "q2", payload("a"))
	check("Campaign", err)
	check("SetMember", a.SetMember(ctx, election.RoleFollower, payload("a")))
	_, err = a.Leader(ctx, "q")
	check("Leader", err)
	_, err = a.Leaders(ctx)
	check("Leaders", err)
	_, err = a.Members(ctx)
	check("Members", err)
	_, _, err = a.StepDownRequest(ctx, "q")
	check("StepDownRequest", err)
	_, err = a.StepDownRequests(ctx)
	check("StepDownRequests", err)
	_, err = a.History(ctx, "q", 5)
	check("History", err)
	check("RequestStepDown", a.RequestStepDown(ctx, "q", ""))
	check("ReleaseTerm", a.ReleaseTerm(ctx, "q", la.Term()))
	channelCloses(t, before, "a Changes channel opened before the session was lost")
	channelCloses(t, a.Changes(watchCtx), "a Changes channel opened after the session was lost")
	if vu := la.ValidUntil(); !vu.Equal(validUntil) {
		t.Errorf("ValidUntil moved after the leadership was lost: %v then %v", validUntil, vu)
	}

	if err := a.Close(e.ctx()); err != nil {
		t.Logf("close after session loss: %v", err) // allowed: the cleanup could not be confirmed
	}
	_, err = a.Leader(ctx, "q")
	if !errors.Is(err, election.ErrClosed) {
		t.Errorf("Leader after session loss and Close: %v, want ErrClosed", err)
	}
}

// testResignCancelled checks Resign with a context that is already
// cancelled: Done is closed when it returns, and the clean release is not
// abandoned: a waiting follower wins well before the lease could expire.
func testResignCancelled(e *env) {
	t := e.t
	a, b := e.replica("a"), e.replica("b")
	la := e.campaign(a, "q", payload("a"))
	next := e.campaignAsync(b, "q", payload("b"))
	next.blocked(t, "a leads")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	resigned := time.Now()
	if err := la.Resign(ctx); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("Resign with a cancelled context: %v, want nil or context.Canceled", err)
	}
	if !isClosed(la.Done()) {
		t.Error("Done still open after Resign returned")
	}
	lb := next.won(t, prompt)
	t.Logf("Resign with a cancelled context → follower leads: %v", next.at.Sub(resigned))
	if lb.Term() <= la.Term() {
		t.Errorf("term %d after %d", lb.Term(), la.Term())
	}
	checkLost(e, la, "leadership resigned with a cancelled context")
	checkHistory(e, e.reader(), "q",
		wantTerm{lb.Term(), "b", ""},
		wantTerm{la.Term(), "a", election.EndResign},
	)
}

// channelCloses waits up to prompt for ch to be closed; a pending
// wake-up before the close is allowed.
func channelCloses(t interface {
	Helper()
	Errorf(string, ...any)
}, ch <-chan struct{}, what string) {
	t.Helper()
	deadline := time.After(prompt)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Errorf("%s: not closed within %v", what, prompt)
			return
		}
	}
}
