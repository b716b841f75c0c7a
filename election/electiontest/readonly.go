package electiontest

import (
	"errors"
	"time"

	"github.com/regentd/regent/election"
)

// testReadOnly checks the read-only backend's side of the contract: it
// refuses Campaign and SetMember at once with ErrReadOnly, in every state,
// and every Operator call works on it.
func testReadOnly(e *env) {
	t := e.t
	a := e.replica("a")
	reader := e.reader()
	var op election.Operator = reader // everything a read-only backend offers
	ctx := e.ctx()

	refused := func(when string) {
		t.Helper()
		start := time.Now()
		l, err := reader.Campaign(ctx, "q", payload("reader"))
		if !errors.Is(err, election.ErrReadOnly) {
			t.Errorf("%s: read-only Campaign returned (%v, %v), want ErrReadOnly", when, l, err)
		}
		if took := time.Since(start); took > prompt {
			t.Errorf("%s: read-only Campaign took %v, want at once", when, took)
		}
		if err := reader.SetMember(ctx, election.RoleFollower, payload("reader")); !errors.Is(err, election.ErrReadOnly) {
			t.Errorf("%s: read-only SetMember returned %v, want ErrReadOnly", when, err)
		}
	}
	refused("before any leader")

	changes := op.Changes(ctx)
	la := e.campaign(a, "q", payload("a"))
	woken(t, changes, prompt, "a new leader, seen by a read-only backend")
	refused("while a leads")

	if rec, err := op.Leader(ctx, "q"); err != nil || rec.Node != "a" || rec.Term != la.Term() {
		t.Errorf("read-only Leader: %s@%d, %v; want a@%d", rec.Node, rec.Term, err, la.Term())
	}
	if recs, err := op.Leaders(ctx); err != nil || len(recs) != 1 {
		t.Errorf("read-only Leaders: %+v, %v; want one record", recs, err)
	}
	if _, err := op.Members(ctx); err != nil {
		t.Errorf("read-only Members: %v", err)
	}
	if h, err := op.History(ctx, "q", 5); err != nil || len(h) != 1 || h[0].Term != la.Term() {
		t.Errorf("read-only History: %+v, %v; want a's term %d", h, err, la.Term())
	}
	if err := op.RequestStepDown(ctx, "q", ""); err != nil {
		t.Errorf("read-only RequestStepDown: %v", err)
	}
	if _, ok, err := op.StepDownRequest(ctx, "q"); err != nil || !ok {
		t.Errorf("read-only StepDownRequest: ok %v, %v; want the request just made", ok, err)
	}
	if reqs, err := op.StepDownRequests(ctx); err != nil || len(reqs) != 1 {
		t.Errorf("read-only StepDownRequests: %+v, %v; want one", reqs, err)
	}
	if err := op.ReleaseTerm(ctx, "q", la.Term()+1); err != nil {
		t.Errorf("read-only ReleaseTerm of a term the queue does not hold: %v, want nil", err)
	}
	if isClosed(la.Done()) {
		t.Error("leadership lost after a read-only ReleaseTerm of another term")
	}
	if err := op.ReleaseTerm(ctx, "q", la.Term()); err != nil {
		t.Errorf("read-only ReleaseTerm: %v", err)
	}
	closedWithin(t, la.Done(), prompt, "Done of a leadership whose term was released")
	if isClosed(op.Done()) {
		t.Error("read-only backend's Done closed before Close")
	}

	if err := op.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	refused("after Close")
}
