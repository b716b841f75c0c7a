package electiontest

import (
	"fmt"
	"time"

	"github.com/regentd/regent/election"
)

// wantTerm is what a history entry must say of one term.
type wantTerm struct {
	term   int64
	node   string
	reason string // "" while the term lasts
}

// checkHistory reads the history of queue and compares its newest entries
// with want (newest first).
func checkHistory(e *env, b election.Backend, queue string, want ...wantTerm) {
	t := e.t
	t.Helper()
	hist, err := b.History(e.ctx(), queue, len(want))
	if err != nil {
		t.Fatalf("history of %s: %v", queue, err)
	}
	if len(hist) != len(want) {
		t.Fatalf("history of %s with limit %d: %d entries %+v, want %d", queue, len(want), len(hist), hist, len(want))
	}
	for i, w := range want {
		h := hist[i]
		what := fmt.Sprintf("history of %s, entry %d (term %d)", queue, i, w.term)
		if h.Queue != queue || h.Term != w.term || h.Node != w.node || h.Host != "host-"+w.node {
			t.Errorf("%s: %+v, want queue %s term %d node %s host host-%s", what, h, queue, w.term, w.node, w.node)
		}
		if h.EndReason != w.reason {
			t.Errorf("%s: end reason %q, want %q", what, h.EndReason, w.reason)
		}
		// Every term of these fresh clusters began during the test.
		if now := time.Now(); h.From.Before(now.Add(-time.Minute)) || h.From.After(now.Add(5*time.Second)) {
			t.Errorf("%s: start time %v, want about now", what, h.From)
		}
		switch {
		case w.reason == "" && !h.To.IsZero():
			t.Errorf("%s: lasting term has end time %v", what, h.To)
		case w.reason != "" && h.To.Before(h.From):
			t.Errorf("%s: ended %v, before it began %v", what, h.To, h.From)
		}
	}
}

// testHistory checks the term history of a queue: newest first, bounded
// by its limit, with how each term ended (resign, released), and readable
// from a read-only backend. Unclean ends are checked by testKillSession
// (lost) and testHolderKilled (expiry).
func testHistory(e *env) {
	t := e.t
	a, b := e.replica("a"), e.replica("b")
	reader := e.reader()

	if hist, err := reader.History(e.ctx(), "q", 10); err != nil || len(hist) != 0 {
		t.Fatalf("history of a queue never led: %+v, %v; want none", hist, err)
	}

	l1 := e.campaign(a, "q", payload("a"))
	checkHistory(e, reader, "q", wantTerm{l1.Term(), "a", ""})
	e.resign(l1)

	// b leads; a waits and takes over once a guard releases b's term.
	l2 := e.campaign(b, "q", payload("b"))
	next := e.campaignAsync(a, "q", payload("a"))
	next.blocked(t, "b leads")
	if err := reader.ReleaseTerm(e.ctx(), "q", l2.Term()); err != nil {
		t.Fatalf("release term %d: %v", l2.Term(), err)
	}
	l3 := next.won(t, prompt)
	closedWithin(t, l2.Done(), prompt, "Done of the released leadership")

	checkHistory(e, reader, "q",
		wantTerm{l3.Term(), "a", ""},
		wantTerm{l2.Term(), "b", election.EndReleased},
		wantTerm{l1.Term(), "a", election.EndResign},
	)
	checkHistory(e, reader, "q", wantTerm{l3.Term(), "a", ""})

	// Other queues have their own history.
	l4 := e.campaign(b, "other", payload("b"))
	checkHistory(e, reader, "other", wantTerm{l4.Term(), "b", ""})
	checkHistory(e, reader, "q",
		wantTerm{l3.Term(), "a", ""},
		wantTerm{l2.Term(), "b", election.EndReleased},
	)
	if hist, _ := reader.History(e.ctx(), "q", 100); len(hist) != 3 {
		t.Errorf("history of q with a large limit: %d entries, want 3", len(hist))
	}
}
