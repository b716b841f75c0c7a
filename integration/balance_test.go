package integration

import (
	"encoding/json"
	"flag"
	"fmt"
	"testing"
	"time"
)

var balanceQueues = flag.Int("balance-queues", 30, "queues in TestBalance (the issue asks 300: see make bench-balance; 300 overloads 2 shared cores)")

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

// 3 replicas × many queues: leadership is spread evenly after settling,
// after a replica joins, and after one is killed; never two terms at once.
func TestBalance(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		c := newCluster(t, be)
		var queues []string
		for i := 0; i < *balanceQueues; i++ {
			queues = append(queues, fmt.Sprintf("b%03d", i))
		}
		opts := func(node string) replicaOpts {
			// A 10 s lease: hundreds of handovers on 2 loaded cores must not
			// starve renewals into spurious fencing.
			return replicaOpts{node: node, queues: queues, ttl: 10 * time.Second, workerArgs: []string{"-interval", "500ms"}, extra: []string{"--log-level", "info"}}
		}
		c.start(opts("r1"))
		c.start(opts("r2"))
		took, counts := c.waitBalanced([]string{"r1", "r2"}, len(queues), 5*time.Minute)
		t.Logf("%s: 2 replicas settled balanced in %s: %v", be.name, took.Round(time.Millisecond), counts)

		r3 := c.start(opts("r3"))
		took, counts = c.waitBalanced([]string{"r1", "r2", "r3"}, len(queues), 5*time.Minute)
		t.Logf("%s: a joining replica took its share in %s: %v", be.name, took.Round(time.Millisecond), counts)

		r3.kill()
		took, counts = c.waitBalanced([]string{"r1", "r2"}, len(queues), 5*time.Minute)
		t.Logf("%s: the killed replica's queues spread in %s: %v", be.name, took.Round(time.Millisecond), counts)
		c.check()
	})
}
