package integration

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/regentd/regent/integration/observer"
)

// balanceWorkerEvery: in TestBalance, one queue in this many runs a real
// worker.
const balanceWorkerEvery = 10

var (
	balanceQueues = flag.Int("balance-queues", 300, "queues in TestBalance (issue 7 asks 300 × 3 replicas)")
)

// leaderCounts returns how many queues each node leads, from status --json.
func (c *cluster) leaderCounts() (map[string]int, int) {
	out, errOut, code := c.regentCmd("status", "--json")
	if code != 0 {
		c.t.Fatalf("status --json exit %d: %s", code, errOut)
	}
	var doc statusDocT
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		c.t.Fatal(err)
	}
	counts := map[string]int{}
	led := 0
	for _, q := range doc.Queues {
		if q.Leader != nil {
			counts[q.Leader.Node]++
			led++
		}
	}
	return counts, led
}

// waitBalanced waits until every queue is led and each of nodes leads
// between floor(Q/R) and ceil(Q/R) queues.
func (c *cluster) waitBalanced(nodes []string, queues int, d time.Duration) (time.Duration, map[string]int) {
	floor, ceil := queues/len(nodes), (queues+len(nodes)-1)/len(nodes)
	var counts map[string]int
	took := eventually(c.t, d, fmt.Sprintf("each of %v leads %d..%d of %d queues", nodes, floor, ceil, queues), func() bool {
		var led int
		counts, led = c.leaderCounts()
		if led != queues {
			return false
		}
		for _, n := range nodes {
			if counts[n] < floor || counts[n] > ceil {
				return false
			}
		}
		return len(counts) == len(nodes)
	})
	return took, counts
}

// termsSeen counts the terms the observer has seen, over every queue.
func (c *cluster) termsSeen() int {
	r := observer.Check(c.lines(), overlapTol)
	n := 0
	for _, ivs := range r.Queues {
		n += len(ivs)
	}
	return n
}

// warnLines returns the log lines of r after offset that report a failed
// backend operation (campaign, lock attempt, handover, member record,
// renewal).
func (r *replica) warnLines(offset int) []string {
	s := r.log.String()
	if offset > len(s) {
		offset = len(s)
	}
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s[offset:]))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		l := sc.Text()
		if (strings.Contains(l, "[WARN]") || strings.Contains(l, "[ERROR]")) && strings.Contains(l, "failed") {
			out = append(out, l)
		}
	}
	return out
}

// 3 replicas × 300 queues (issue 7): leadership is spread evenly after
// settling, after a replica joins, and after one is SIGKILLed; every
// rebalancing is a graceful handover (no queue of the 30 that run workers
// is without running workers for longer than a hang bound); the survivors of the kill take its
// queues without backend errors, within the crash bound; never two terms
// of a queue at once.
func TestBalance(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		c := newCluster(t, be)
		q := *balanceQueues
		var queues []string
		for i := 0; i < q; i++ {
			queues = append(queues, fmt.Sprintf("b%03d", i))
		}
		// A 10 s lease: hundreds of spawns on 2 loaded cores must not
		// starve renewals into spurious fencing.
		const ttl = 10 * time.Second
		// Every tenth queue runs a real worker (and its guard); the others
		// are leadership-only. Balancing is about leadership; 600 worker
		// and guard processes on 2 cores made every timing a measure of
		// the machine's load (settling took 9.5 s on an idle machine and
		// over 50 s on a loaded one, for the same code).
		var cfg strings.Builder
		cfg.WriteString("queues:\n")
		for i, name := range queues {
			if i%balanceWorkerEvery == 0 {
				fmt.Fprintf(&cfg, "  %s: {concurrency: 1}\n", name)
			} else {
				fmt.Fprintf(&cfg, "  %s: {concurrency: 0}\n", name)
			}
		}
		opts := func(node string) replicaOpts {
			return replicaOpts{node: node, config: cfg.String(), ttl: ttl, workerArgs: []string{"-interval", "500ms"}, extra: []string{"--log-level", "info"}}
		}
		phase := func(what string, took time.Duration, counts map[string]int, terms0 int) int {
			terms := c.termsSeen()
			t.Logf("%s: %s in %s: %v; %d new terms", be.name, what, took.Round(time.Millisecond), counts, terms-terms0)
			return terms
		}

		t0 := time.Now()
		r1 := c.start(opts("r1"))
		r2 := c.start(opts("r2"))
		took, counts := c.waitBalanced([]string{"r1", "r2"}, q, 3*time.Minute)
		terms := phase("2 replicas settled balanced", took, counts, 0)

		tJoin := time.Now()
		r3 := c.start(opts("r3"))
		took, counts = c.waitBalanced([]string{"r1", "r2", "r3"}, q, 3*time.Minute)
		terms = phase("a joining replica took its share", took, counts, terms)

		// Thundering herd: SIGKILL the replica that leads a third of the
		// queues; the survivors must take them without a burst of backend
		// errors, every queue led again within the crash bound.
		errs0 := r1.metric("regent_backend_errors_total", "") + r2.metric("regent_backend_errors_total", "")
		off1, off2 := len(r1.log.String()), len(r2.log.String())
		killed := time.Now()
		r3.kill()
		allLed := eventually(t, 3*time.Minute, "every queue led by a survivor", func() bool {
			counts, led := c.leaderCounts()
			return led == q && counts["r3"] == 0
		})
		t.Logf("%s: every queue of the killed replica led again %s after the kill", be.name, allLed.Round(time.Millisecond))
		// A hang check, not the crash bound: 270 of the queues are
		// leadership-only, so no guard releases their terms and the lease
		// runs out; on etcd a campaign restarted meanwhile waits out one
		// more lease (seen: 13.8-19.1 s on 2 loaded cores). The time is
		// logged above and measured in make bench-scale.
		if bound := 2*ttl + ttl/2; allLed > bound {
			t.Errorf("%s: queues of the killed replica led again only after %s, beyond the crash bound %s", be.name, allLed, bound)
		}
		_, counts = c.waitBalanced([]string{"r1", "r2"}, q, 3*time.Minute)
		phase("the killed replica's queues spread", time.Since(killed), counts, terms)
		errs := r1.metric("regent_backend_errors_total", "") + r2.metric("regent_backend_errors_total", "") - errs0
		warns := append(r1.warnLines(off1), r2.warnLines(off2)...)
		t.Logf("%s: takeover of the killed replica's queues: %v backend errors, %d failure lines logged", be.name, errs, len(warns))
		if errs != 0 || len(warns) > 0 {
			for i, l := range warns {
				if i == 20 {
					break
				}
				t.Log(l)
			}
			t.Errorf("%s: %v backend errors and %d failure lines during the takeover, want none", be.name, errs, len(warns))
		}

		// Safety and the handover gaps, from the workers' own lines.
		r := observer.Check(c.lines(), overlapTol)
		if !r.OK() {
			t.Fatalf("safety violated:\n%s", strings.Join(append(r.Overlaps, r.Order...), "\n"))
		}
		// Gaps between terms, by the phase in which the next term began.
		// A hang check: a graceful handover takes well under a second per
		// queue, a takeover after a SIGKILL the crash bound; hundreds of
		// worker spawns at once on two cores add a few seconds.
		phases := []struct {
			name     string
			from, to time.Time
			bound    time.Duration
		}{
			{"start and settle", t0, tJoin, ttl},
			{"join", tJoin, killed, ttl},
			{"kill", killed, time.Now(), 2 * ttl},
		}
		for _, ph := range phases {
			var gaps []time.Duration
			for _, ivs := range r.Queues {
				for _, iv := range ivs {
					if iv.HasNext && !iv.NextFirst.Before(ph.from) && iv.NextFirst.Before(ph.to) {
						gaps = append(gaps, iv.GapToNext)
					}
				}
			}
			if len(gaps) == 0 {
				continue
			}
			sort.Slice(gaps, func(i, j int) bool { return gaps[i] < gaps[j] })
			t.Logf("%s: %s: %d handovers; gap between terms (workers' lines, 500 ms apart): median %s, p90 %s, max %s",
				be.name, ph.name, len(gaps), gaps[len(gaps)/2].Round(time.Millisecond),
				gaps[len(gaps)*9/10].Round(time.Millisecond), gaps[len(gaps)-1].Round(time.Millisecond))
			if max := gaps[len(gaps)-1]; max > ph.bound {
				t.Errorf("%s: %s: a queue had no running workers for %s between terms, beyond %s", be.name, ph.name, max, ph.bound)
			}
		}
	})
}

// prefer = [b]: b leads when it is up, a leads while b is down, and b
// gets the queue back, by a graceful handover, once it returns.
func TestPreferredNode(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		c := newCluster(t, be)
		opts := func(node string) replicaOpts {
			return replicaOpts{node: node, queues: []string{"p"}, extra: []string{"--prefer", "b"}}
		}
		c.start(opts("a"))
		if n, _ := c.waitLeaderRunning("p", hangTimeout); n != "a" {
			t.Fatalf("alone, a should lead p; %s does", n)
		}
		b := c.start(opts("b"))
		eventually(t, hangTimeout, "b, preferred, leads p", func() bool {
			n, _ := c.waitLeaderRunning("p", hangTimeout)
			return n == "b"
		})
		b.kill()
		eventually(t, hangTimeout, "a leads p while b is down", func() bool {
			n, _ := c.waitLeaderRunning("p", hangTimeout)
			return n == "a"
		})
		c.start(opts("b"))
		eventually(t, hangTimeout, "b leads p again", func() bool {
			n, _ := c.waitLeaderRunning("p", hangTimeout)
			return n == "b"
		})
		c.check()
	})
}
