// Package observer is the external judge of regent's safety: it reads the
// lines test workers append — "term node pid unix-nano queue worker" — and
// checks, per queue, that the workers of two different terms never ran at
// the same instant, and that terms only increase over time. CheckHistory
// then checks that every term seen in the workers was recorded as a
// leadership in the backend's own history.
package observer

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Line is one observation written by a test worker.
type Line struct {
	Term   int64
	Node   string
	PID    int
	At     time.Time
	Queue  string
	Worker int
}

// Interval is the span during which one term's workers were seen running.
type Interval struct {
	Queue      string
	Term       int64
	Node       string
	First      time.Time
	Last       time.Time
	Lines      int
	PIDs       map[int]bool
	NextTerm   int64
	NextFirst  time.Time
	GapToNext  time.Duration
	HasNext    bool
	Overlapped bool
}

// Report is the result of a check.
type Report struct {
	Lines     int
	Queues    map[string][]*Interval
	Overlaps  []string
	Order     []string
	Malformed int
	// MaxOverlap is the largest overlap found (0 if none).
	MaxOverlap time.Duration
}

// OK reports whether no overlap and no term-order violation was found.
func (r *Report) OK() bool { return len(r.Overlaps) == 0 && len(r.Order) == 0 }

// Terms returns the terms seen for queue, in time order.
func (r *Report) Terms(queue string) []int64 {
	var out []int64
	for _, iv := range r.Queues[queue] {
		out = append(out, iv.Term)
	}
	return out
}

// Parse reads observation lines; malformed lines (a torn last write) are
// counted, not fatal.
func Parse(rd io.Reader) ([]Line, int, error) {
	var lines []Line
	bad := 0
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 {
			bad++
			continue
		}
		term, err1 := strconv.ParseInt(f[0], 10, 64)
		pid, err2 := strconv.Atoi(f[2])
		ns, err3 := strconv.ParseInt(f[3], 10, 64)
		w, err4 := strconv.Atoi(f[5])
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
			bad++
			continue
		}
		lines = append(lines, Line{Term: term, Node: f[1], PID: pid, At: time.Unix(0, ns), Queue: f[4], Worker: w})
	}
	return lines, bad, sc.Err()
}

// ParseFile reads a file of observation lines (missing file: no lines).
func ParseFile(path string) ([]Line, int, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	return Parse(f)
}

// Check computes every term's interval per queue and reports any overlap
// longer than tolerance (the timer resolution the caller accepts) and any
// term that started before an earlier-numbered term ended.
func Check(lines []Line, tolerance time.Duration) *Report {
	r := &Report{Lines: len(lines), Queues: map[string][]*Interval{}}
	byKey := map[string]map[int64]*Interval{}
	for _, l := range lines {
		m := byKey[l.Queue]
		if m == nil {
			m = map[int64]*Interval{}
			byKey[l.Queue] = m
		}
		iv := m[l.Term]
		if iv == nil {
			iv = &Interval{Queue: l.Queue, Term: l.Term, Node: l.Node, First: l.At, Last: l.At, PIDs: map[int]bool{}}
			m[l.Term] = iv
		}
		if l.At.Before(iv.First) {
			iv.First = l.At
		}
		if l.At.After(iv.Last) {
			iv.Last = l.At
		}
		if l.Node != iv.Node {
			r.Overlaps = append(r.Overlaps, fmt.Sprintf("queue %s term %d: workers on two nodes (%s and %s)", l.Queue, l.Term, iv.Node, l.Node))
		}
		iv.Lines++
		iv.PIDs[l.PID] = true
	}
	for q, m := range byKey {
		ivs := make([]*Interval, 0, len(m))
		for _, iv := range m {
			ivs = append(ivs, iv)
		}
		sort.Slice(ivs, func(i, j int) bool { return ivs[i].Term < ivs[j].Term })
		// Every pair, not only neighbours: a stale term may reappear late.
		for i := 0; i < len(ivs); i++ {
			for j := i + 1; j < len(ivs); j++ {
				a, b := ivs[i], ivs[j]
				if ov := a.Last.Sub(b.First); ov > 0 {
					if ov > r.MaxOverlap {
						r.MaxOverlap = ov
					}
					if ov > tolerance {
						a.Overlapped, b.Overlapped = true, true
						r.Overlaps = append(r.Overlaps, fmt.Sprintf("queue %s: term %d (node %s) ran until %s, %s after term %d (node %s) started",
							q, a.Term, a.Node, a.Last.Format("15:04:05.000000"), ov, b.Term, b.Node))
					}
				}
			}
			if i+1 < len(ivs) {
				ivs[i].HasNext = true
				ivs[i].NextTerm = ivs[i+1].Term
				ivs[i].NextFirst = ivs[i+1].First
				ivs[i].GapToNext = ivs[i+1].First.Sub(ivs[i].Last)
			}
		}
		for i := 1; i < len(ivs); i++ {
			if ivs[i].First.Before(ivs[i-1].First) {
				r.Order = append(r.Order, fmt.Sprintf("queue %s: term %d started before term %d", q, ivs[i].Term, ivs[i-1].Term))
			}
		}
		r.Queues[q] = ivs
	}
	return r
}

// String summarises the report, one line per queue and problem.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d lines, %d malformed, max overlap %s\n", r.Lines, r.Malformed, r.MaxOverlap)
	for _, q := range sortedQueues(r.Queues) {
		for _, iv := range r.Queues[q] {
			fmt.Fprintf(&b, "  %s term %d node %s: %s .. %s (%d lines, %d pids)", q, iv.Term, iv.Node,
				iv.First.Format("15:04:05.000"), iv.Last.Format("15:04:05.000"), iv.Lines, len(iv.PIDs))
			if iv.HasNext {
				fmt.Fprintf(&b, " gap to next %s", iv.GapToNext.Round(time.Millisecond))
			}
			b.WriteString("\n")
		}
	}
	for _, o := range r.Overlaps {
		fmt.Fprintf(&b, "OVERLAP: %s\n", o)
	}
	for _, o := range r.Order {
		fmt.Fprintf(&b, "ORDER: %s\n", o)
	}
	return b.String()
}

func sortedQueues(m map[string][]*Interval) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
