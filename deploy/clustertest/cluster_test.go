//go:build clustertest

package clustertest

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/regentd/regent/integration/observer"
)

const (
	// leaseTTL is the replicas' --lease-ttl in the test cluster.
	leaseTTL = 2 * time.Second
	// takeoverBound bounds the time from the start of a fault (docker kill,
	// docker network disconnect) to the new leader's first worker line:
	// the design's TTL + 1 s for a leader host that is dead or cut off,
	// plus 1 s for the engine to carry the fault out (0.1-0.6 s here).
	takeoverBound = leaseTTL + 2*time.Second
)

// queues are the queues of docker-compose.yml.
var queues = []string{"emails", "reports"}

// takeover is one measured change of a queue's leader.
type takeover struct {
	backend, event, queue string
	from, to              string
	oldTerm, newTerm      int64
	// sinceFault runs from the start of the fault command to the new
	// term's first worker line; gap from the old term's last worker line
	// to it (positive: no overlap).
	sinceFault, gap time.Duration
}

func TestLocalCluster(t *testing.T) {
	backends := strings.Split("etcd,postgres", ",")
	if b := os.Getenv("CLUSTERTEST_BACKENDS"); b != "" {
		backends = strings.Split(b, ",")
	}
	var all []takeover
	for _, b := range backends {
		t.Run(b, func(t *testing.T) { all = append(all, testBackend(t, b)...) })
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "takeovers (lease TTL %s, bound %s from the start of the fault):\n", leaseTTL, takeoverBound)
	for _, m := range all {
		fmt.Fprintf(&sb, "  %-8s %-12s %-8s %s (term %d) -> %s (term %d): new worker %6s after the fault, %6s after the old one's last line\n",
			m.backend, m.event, m.queue, m.from, m.oldTerm, m.to, m.newTerm,
			m.sinceFault.Round(time.Millisecond), m.gap.Round(time.Millisecond))
	}
	t.Log(sb.String())
}

// testBackend runs the whole scenario on one backend and returns the
// takeovers it measured.
func testBackend(t *testing.T, backend string) []takeover {
	c := newCluster(t, backend, leaseTTL)
	c.up()
	var measured []takeover

	ls := c.leaders(queues, time.Minute)
	t.Logf("leaders: %v", ls)
	t.Logf("status --check on regent-1: %s", c.statusCheck("regent-1", 30*time.Second))

	// A dead leader host: SIGKILL of every process of the container,
	// workers and guards included.
	victim := ls[queues[0]].replica
	start := time.Now()
	if _, err := c.docker(time.Minute, "kill", c.ids[victim]); err != nil {
		t.Fatalf("docker kill %s: %v", victim, err)
	}
	c.down[victim] = true
	t.Logf("docker kill %s took %s", victim, time.Since(start).Round(time.Millisecond))
	measured = append(measured, c.measure("docker-kill", victim, ls, start)...)
	ls = c.checkUnaffected(victim, ls)

	// A leader cut off from the backend; its HTTP stays reachable on the
	// admin network.
	cut := ls[queues[0]].replica
	network := c.project + "_backend"
	start = time.Now()
	if _, err := c.docker(time.Minute, "network", "disconnect", network, c.ids[cut]); err != nil {
		t.Fatalf("docker network disconnect %s: %v", cut, err)
	}
	t.Logf("docker network disconnect %s took %s", cut, time.Since(start).Round(time.Millisecond))
	measured = append(measured, c.measure("network-cut", cut, ls, start)...)
	if !poll(30*time.Second, func() bool {
		code, _, err := c.get(cut, "/healthz")
		return err == nil && code == http.StatusServiceUnavailable
	}) {
		t.Errorf("%s still reports /healthz OK while cut off from the backend", cut)
	}
	ls = c.checkUnaffected(cut, ls)

	start = time.Now()
	if _, err := c.docker(time.Minute, "network", "connect", network, c.ids[cut]); err != nil {
		t.Fatalf("docker network connect %s: %v", cut, err)
	}
	c.waitFollower(cut, queues, time.Minute)
	t.Logf("%s rejoined as a follower %s after the reconnect", cut, time.Since(start).Round(time.Millisecond))

	// The killed replica comes back as a follower.
	start = time.Now()
	if _, err := c.docker(time.Minute, "start", c.ids[victim]); err != nil {
		t.Fatalf("docker start %s: %v", victim, err)
	}
	c.down[victim] = false
	c.waitHealthy(victim, 2*time.Minute)
	c.refreshPort(victim)
	c.waitFollower(victim, queues, time.Minute)
	t.Logf("%s restarted and rejoined as a follower in %s", victim, time.Since(start).Round(time.Millisecond))

	final := c.leaders(queues, time.Minute)
	for _, q := range queues {
		if final[q] != ls[q] {
			t.Errorf("queue %s changed leader when a follower rejoined: %v -> %v", q, ls[q], final[q])
		}
	}
	t.Logf("status --check on %s: %s", victim, c.statusCheck(victim, 30*time.Second))

	lines := c.readLog()
	r := observer.Check(lines, 0)
	if !r.OK() {
		t.Errorf("the observer log shows workers of two terms at once:\n%s", r)
	} else {
		t.Logf("observer: no overlap\n%s", r)
	}
	return measured
}

// measure waits, for every queue that replica led in before, for the
// first worker line of a newer term after a fault started at start, and
// checks the takeover: no overlap with the old term, another replica,
// within takeoverBound.
func (c *cluster) measure(event, replica string, before map[string]leader, start time.Time) []takeover {
	c.t.Helper()
	var out []takeover
	for _, q := range queues {
		old := before[q]
		if old.replica != replica {
			continue
		}
		lines, first := c.waitNewTerm(q, old.term, 30*time.Second)
		m := takeover{backend: c.backend, event: event, queue: q, from: replica, to: first.Node,
			oldTerm: old.term, newTerm: first.Term, sinceFault: first.At.Sub(start)}
		if last, ok := LastOf(lines, q, old.term); ok {
			m.gap = first.At.Sub(last.At)
		} else {
			c.t.Errorf("%s: no worker line of %s term %d in the observer log", event, q, old.term)
		}
		c.t.Logf("%s of %s: %s term %d -> %s term %d, first new worker line %s after the fault started, %s after the old term's last",
			event, replica, q, old.term, m.to, m.newTerm, m.sinceFault.Round(time.Millisecond), m.gap.Round(time.Millisecond))
		if m.gap <= 0 {
			c.t.Errorf("%s: %s term %d started %s before term %d's last worker line", event, q, m.newTerm, -m.gap, old.term)
		}
		if m.to == replica {
			c.t.Errorf("%s: %s term %d runs on %s, the replica the fault hit", event, q, m.newTerm, replica)
		}
		if m.sinceFault > takeoverBound {
			c.t.Errorf("%s: %s took over after %s, over the bound of %s", event, q, m.sinceFault, takeoverBound)
		}
		out = append(out, m)
	}
	return out
}

// checkUnaffected waits for one leader per queue again and checks that
// the queues the faulty replica did not lead kept their leader and term.
func (c *cluster) checkUnaffected(replica string, before map[string]leader) map[string]leader {
	c.t.Helper()
	after := c.leaders(queues, time.Minute)
	for _, q := range queues {
		if before[q].replica != replica && after[q] != before[q] {
			c.t.Errorf("queue %s failed over although its leader was not hit: %v -> %v", q, before[q], after[q])
		}
	}
	return after
}
