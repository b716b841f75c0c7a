package observer

import (
	"fmt"
	"time"

	"github.com/regentd/regent/election"
)

// CheckHistory compares the terms whose workers were seen running for
// queue (from a Check report) with the backend's history of that queue,
// as election.Backend.History returns it (newest first). It returns one
// message per problem found, none when they agree:
//
//   - the history must list terms strictly decreasing (newest first);
//   - every term seen in the workers must be recorded as a leadership of
//     the same node, unless it is older than the oldest term the history
//     still holds: a backend keeps at least election.HistoryKeep terms per
//     queue, so when the history holds fewer than that nothing was
//     trimmed and every term seen must be there;
//   - a term's workers must not have run before the term began, by more
//     than tolerance (the clocks of the backend's timestamps and of the
//     workers are the same host's in the tests, but not the same reads).
//
// Terms recorded without any worker line are not a problem: a leadership
// may be lost before its first worker wrote a line.
func CheckHistory(r *Report, queue string, hist []election.HistoryEntry, tolerance time.Duration) []string {
	var problems []string
	byTerm := make(map[int64]election.HistoryEntry, len(hist))
	for i, h := range hist {
		if i > 0 && h.Term >= hist[i-1].Term {
			problems = append(problems, fmt.Sprintf("queue %s: history not strictly decreasing: term %d after term %d",
				queue, h.Term, hist[i-1].Term))
		}
		byTerm[h.Term] = h
	}
	trimmed := len(hist) >= election.HistoryKeep
	var oldest int64
	if len(hist) > 0 {
		oldest = hist[len(hist)-1].Term
	}
	for _, iv := range r.Queues[queue] {
		if trimmed && iv.Term < oldest {
			continue // outside the window the backend keeps
		}
		h, ok := byTerm[iv.Term]
		if !ok {
			problems = append(problems, fmt.Sprintf("queue %s: term %d (node %s, workers %s .. %s) is not in the backend's history",
				queue, iv.Term, iv.Node, iv.First.Format("15:04:05.000"), iv.Last.Format("15:04:05.000")))
			continue
		}
		if h.Node != iv.Node {
			problems = append(problems, fmt.Sprintf("queue %s: term %d ran on node %s but the history records node %s",
				queue, iv.Term, iv.Node, h.Node))
		}
		if !h.From.IsZero() && iv.First.Before(h.From.Add(-tolerance)) {
			problems = append(problems, fmt.Sprintf("queue %s: term %d's workers ran at %s, %s before the term began (%s)",
				queue, iv.Term, iv.First.Format("15:04:05.000000"), h.From.Sub(iv.First), h.From.Format("15:04:05.000000")))
		}
	}
	return problems
}
