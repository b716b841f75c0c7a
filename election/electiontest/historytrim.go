package electiontest

import (
	"slices"
	"time"

	"github.com/regentd/regent/election"
)

// trimmedTerm is a term the case made, as its history entry must show it.
type trimmedTerm struct {
	term int64
	node string
	// reasons are the end reasons accepted ("" while the term lasts).
	reasons []string
}

// testHistoryTrimmed makes more than HistoryKeep+5 terms of one queue,
// ended by resign, then one released by ReleaseTerm and one whose session
// is killed, and checks that History lists the newest of them, newest
// first, with their nodes and end reasons, and that it stays bounded.
func testHistoryTrimmed(e *env) {
	t := e.t
	reader := e.reader()
	a, b := e.replica("a"), e.replica("b")
	var made []trimmedTerm // oldest first

	resigned := []string{election.EndResign}
	for i := range election.HistoryKeep + 5 {
		r, node := a, "a"
		if i%2 == 1 {
			r, node = b, "b"
		}
		l := e.campaign(r, "q", payload(i))
		made = append(made, trimmedTerm{l.Term(), node, resigned})
		e.resign(l)
	}

	// A term released by a worker guard's ReleaseTerm.
	lr := e.campaign(b, "q", payload("released"))
	if err := reader.ReleaseTerm(e.ctx(), "q", lr.Term()); err != nil {
		t.Fatalf("release term %d: %v", lr.Term(), err)
	}
	closedWithin(t, lr.Done(), prompt, "Done of the released leadership")
	made = append(made, trimmedTerm{lr.Term(), "b", []string{election.EndReleased}})

	// A term whose session is killed from outside; a takes over.
	c := e.replica("c")
	lc := e.campaign(c, "q", payload("killed"))
	next := e.campaignAsync(a, "q", payload("a"))
	next.blocked(t, "c leads")
	e.h.KillSession(t, c)
	la := next.won(t, takeover)
	made = append(made, trimmedTerm{lc.Term(), "c", []string{election.EndLost, election.EndExpiry}})
	made = append(made, trimmedTerm{la.Term(), "a", []string{""}})

	hist, err := reader.History(e.ctx(), "q", 0)
	if err != nil {
		t.Fatalf("history of q: %v", err)
	}
	if len(hist) < election.HistoryKeep || len(hist) > election.HistoryKeep+5 {
		t.Fatalf("history of q after %d terms: %d entries, want %d to %d (kept, and trimmed)",
			len(made), len(hist), election.HistoryKeep, election.HistoryKeep+5)
	}
	for i, h := range hist {
		w := made[len(made)-1-i]
		if h.Queue != "q" || h.Term != w.term || h.Node != w.node || h.Host != "host-"+w.node {
			t.Errorf("history entry %d: %+v, want queue q term %d node %s host host-%s", i, h, w.term, w.node, w.node)
			continue
		}
		if !slices.Contains(w.reasons, h.EndReason) {
			t.Errorf("history entry %d (term %d): end reason %q, want one of %q", i, h.Term, h.EndReason, w.reasons)
		}
		if h.From.IsZero() || h.From.Before(time.Now().Add(-10*time.Minute)) {
			t.Errorf("history entry %d (term %d): start %v, want about now", i, h.Term, h.From)
		}
		if h.EndReason == "" && !h.To.IsZero() {
			t.Errorf("history entry %d (term %d): lasting term ended at %v", i, h.Term, h.To)
		}
		if h.EndReason != "" && !h.To.IsZero() && h.To.Before(h.From) {
			t.Errorf("history entry %d (term %d): ended %v, before it began %v", i, h.Term, h.To, h.From)
		}
	}
	t.Logf("killed term %d ended %q", lc.Term(), hist[1].EndReason)

	// limit bounds the answer and keeps the newest.
	short, err := reader.History(e.ctx(), "q", 3)
	if err != nil {
		t.Fatalf("history of q, limit 3: %v", err)
	}
	if len(short) != 3 {
		t.Fatalf("history of q, limit 3: %d entries %+v", len(short), short)
	}
	for i := range short {
		if short[i].Term != hist[i].Term || short[i].EndReason != hist[i].EndReason {
			t.Errorf("history with limit 3, entry %d: term %d %q, want term %d %q",
				i, short[i].Term, short[i].EndReason, hist[i].Term, hist[i].EndReason)
		}
	}
}
