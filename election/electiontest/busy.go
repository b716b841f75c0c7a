package electiontest

import (
	"context"
	"errors"
	"time"

	"github.com/regentd/regent/election"
)

// testCampaignBusy checks that one Backend has at most one candidacy per
// queue: a second Campaign for the queue, while the first waits or while
// its leadership holds, fails at once with ErrBusy and leaves the first
// untouched; once the leadership is Done the queue can be campaigned for
// again; other queues are not affected.
func testCampaignBusy(e *env) {
	t := e.t
	a, b := e.replica("a"), e.replica("b")
	lb := e.campaign(b, "q", payload("b"))

	// busy asserts that a second Campaign of a for q fails at once with
	// ErrBusy. A backend that queued it instead would block: the bounded
	// context makes that a failure, not a hang.
	busy := func(while string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), prompt)
		defer cancel()
		start := time.Now()
		l, err := a.Campaign(ctx, "q", payload("a-again"))
		if !errors.Is(err, election.ErrBusy) {
			t.Errorf("second Campaign for q while %s: (%v, %v), want ErrBusy", while, l, err)
			if l != nil {
				_ = l.Resign(e.ctx())
			}
		}
		if took := time.Since(start); took > prompt/2 {
			t.Errorf("second Campaign for q while %s returned after %v, want at once", while, took)
		}
	}

	// While the first campaign waits.
	first := e.campaignAsync(a, "q", payload("a"))
	first.blocked(t, "b leads")
	busy("the first one waits")
	first.blocked(t, "b leads, after a second Campaign was refused")

	// Other queues campaign concurrently.
	e.campaign(a, "other", payload("a"))

	// The first campaign still works.
	e.resign(lb)
	la := first.won(t, prompt)
	if rec := e.leader(b, "q"); rec.Node != "a" || rec.Term != la.Term() || !sameJSON(rec.Payload, payload("a")) {
		t.Errorf("record %s@%d payload %s, want a@%d with the first campaign's payload", rec.Node, rec.Term, rec.Payload, la.Term())
	}

	// While the leadership holds.
	busy("a leads")
	if isClosed(la.Done()) {
		t.Fatal("leadership lost after a second Campaign for its queue was refused")
	}
	if err := la.Publish(e.ctx(), payload("a2")); err != nil {
		t.Errorf("publish after a second Campaign was refused: %v", err)
	}

	// Once Done, at once again.
	e.resign(la)
	la2 := e.campaign(a, "q", payload("a3"))
	if la2.Term() <= la.Term() {
		t.Errorf("term %d after %d", la2.Term(), la.Term())
	}
}
