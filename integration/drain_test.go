package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/election/etcdbackend"
	"github.com/regentd/regent/election/pgbackend"
	"github.com/regentd/regent/integration/observer"
	"github.com/regentd/regent/internal/testenv"
)

// membersDocT mirrors the status document's members and cluster
// problems, and the config generations of the queues.
type membersDocT struct {
	Members []struct {
		Node     string    `json:"node"`
		Host     string    `json:"host"`
		PID      int       `json:"pid"`
		Version  string    `json:"version"`
		HTTPAddr string    `json:"http_addr"`
		Drained  bool      `json:"drained"`
		LastSeen time.Time `json:"last_seen"`
	} `json:"members"`
	Problems []struct {
		Severity string `json:"severity"`
		Code     string `json:"code"`
		Message  string `json:"message"`
	} `json:"problems"`
	Queues []struct {
		Queue  string `json:"queue"`
		Leader *struct {
			Node             string `json:"node"`
			ConfigGeneration string `json:"config_generation"`
		} `json:"leader"`
		Followers []struct {
			Node             string `json:"node"`
			ConfigGeneration string `json:"config_generation"`
		} `json:"followers"`
	} `json:"queues"`
}

func (c *cluster) membersDoc() membersDocT {
	c.t.Helper()
	out, errOut, code := c.regentCmd("status", "--json")
	if code != 0 {
		c.t.Fatalf("status --json exit %d: %s", code, errOut)
	}
	var d membersDocT
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		c.t.Fatalf("status --json: %v\n%s", err, out)
	}
	return d
}

// member returns node's entry in the members list, and whether it is
// there.
func (d membersDocT) member(node string) (http string, drained, ok bool) {
	for _, m := range d.Members {
		if m.Node == node {
			return m.HTTPAddr, m.Drained, true
		}
	}
	return "", false, false
}

// leaderlessWatch polls the leader records of queues through its own
// read-only backend and keeps, per queue, the longest time it saw the
// queue without a leader record.
type leaderlessWatch struct {
	mu      sync.Mutex
	longest map[string]time.Duration
	stop    func()
}

func (c *cluster) watchLeaderless(queues []string) *leaderlessWatch {
	ctx, cancel := context.WithCancel(context.Background())
	b := c.readOnly(ctx)
	w := &leaderlessWatch{longest: map[string]time.Duration{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		since := map[string]time.Time{}
		for ctx.Err() == nil {
			ls, err := b.Leaders(ctx)
			now := time.Now()
			if err == nil {
				led := map[string]bool{}
				for _, l := range ls {
					if l.Err == nil {
						led[l.Queue] = true
					}
				}
				w.mu.Lock()
				for _, q := range queues {
					if led[q] {
						delete(since, q)
						continue
					}
					if since[q].IsZero() {
						since[q] = now
					}
					w.longest[q] = max(w.longest[q], now.Sub(since[q]))
				}
				w.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	var once sync.Once
	w.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer ccancel()
			_ = b.Close(cctx)
		})
	}
	return w
}

// waitNoLeaderChange waits until no leader record's term changed for quiet.
func (c *cluster) waitNoLeaderChange(quiet, d time.Duration) {
	c.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := c.readOnly(ctx)
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer ccancel()
		_ = b.Close(cctx)
	}()
	terms := map[string]int64{}
	changed := time.Now()
	eventually(c.t, d, fmt.Sprintf("no leadership change for %s", quiet), func() bool {
		ls, err := b.Leaders(ctx)
		if err != nil {
			return false
		}
		for _, l := range ls {
			if l.Err == nil && terms[l.Queue] != l.Term {
				terms[l.Queue] = l.Term
				changed = time.Now()
			}
		}
		return time.Since(changed) >= quiet
	})
}

// max returns the longest leaderless time seen and its queue.
func (w *leaderlessWatch) max() (string, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	q, d := "", time.Duration(0)
	for k, v := range w.longest {
		if v > d {
			q, d = k, v
		}
	}
	return q, d
}

// 3 replicas × 90 queues: draining the replica that leads 30 hands them
// all over gracefully (it leads 0, the others 45 each), with no overlap
// and no queue leaderless beyond a hang bound; status, --check and
// regent_drained show the drain; the drained replica restarted with the
// same node id stays drained; undrain balances again.
func TestDrain(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		c := newCluster(t, be)
		const nq = 90
		const ttl = 4 * time.Second
		var queues []string
		var cfg strings.Builder
		cfg.WriteString("queues:\n")
		for i := 0; i < nq; i++ {
			name := fmt.Sprintf("d%02d", i)
			queues = append(queues, name)
			// Every fifth queue runs a worker (the observer file measures
			// its handover gaps); the others are leadership-only.
			fmt.Fprintf(&cfg, "  %s: {concurrency: %d}\n", name, map[bool]int{true: 1, false: 0}[i%5 == 0])
		}
		opts := func(node string) replicaOpts {
			return replicaOpts{node: node, config: cfg.String(), ttl: ttl, workerArgs: []string{"-interval", "100ms"}, extra: []string{"--log-level", "info"}}
		}
		r1 := c.start(opts("r1"))
		c.start(opts("r2"))
		r3 := c.start(opts("r3"))
		took, counts := c.waitBalanced([]string{"r1", "r2", "r3"}, nq, 3*time.Minute)
		t.Logf("%s: 3 replicas balanced in %s: %v", be.name, took.Round(time.Millisecond), counts)

		// An operator drains a settled cluster: wait until no leadership
		// changed for a step-down hold (the last balancing handovers'
		// holds are over). A drain that overlaps them can hand a queue
		// to a replica whose etcd campaign still sleeps out the hold of
		// the previous handover, which named another node (seen: 2.2-2.7 s
		// without a leader).
		c.waitNoLeaderChange(4*time.Second, hangTimeout)
		watch := c.watchLeaderless(queues)
		defer watch.stop()
		tDrain := time.Now()
		type result struct {
			out, errOut string
			code        int
		}
		drained := make(chan result, 1)
		go func() {
			out, errOut, code := c.regentCmd("drain", "--node", "r3", "--reason", "kernel upgrade")
			drained <- result{out, errOut, code}
		}()
		// One human status during the drain (members, the drained
		// warning; one queue only, for a short log).
		eventually(t, hangTimeout, "status shows the drain", func() bool {
			out, _, _ := c.regentCmd("status", "--queue", queues[0])
			if strings.Contains(out, "WARNING drained") {
				t.Logf("%s: regent status --queue %s during the drain:\n%s", be.name, queues[0], out)
				return true
			}
			return false
		})
		var res result
		select {
		case res = <-drained:
		case <-time.After(2 * hangTimeout):
			t.Fatal("regent drain did not return")
		}
		drainTook := time.Since(tDrain)
		if res.code != 0 || !strings.Contains(res.out, "node r3 is drained: it leads nothing") {
			t.Fatalf("drain: exit %d\n%s%s", res.code, res.out, res.errOut)
		}
		counts, led := c.leaderCounts()
		if counts["r3"] != 0 {
			t.Fatalf("after drain r3 leads %d", counts["r3"])
		}
		_, counts = c.waitBalanced([]string{"r1", "r2"}, nq, hangTimeout)
		q, gap := watch.max()
		t.Logf("%s: drain of r3 (30 queues) took %s (regent drain returned); then %v, %d led; longest leaderless (leader records, 50 ms polls): %s (%s)",
			be.name, drainTook.Round(time.Millisecond), counts, led, gap.Round(time.Millisecond), q)
		if gap > time.Second {
			out, _, _ := c.regentCmd("status", "--history", "--queue", q)
			t.Logf("%s: history of %s:\n%s", be.name, q, out)
		}
		if bound := 2 * ttl; gap > bound {
			t.Errorf("%s: queue %s without a leader record for %s, beyond %s", be.name, q, gap, bound)
		}
		rep := observer.Check(c.lines(), overlapTol)
		var gaps []time.Duration
		for _, ivs := range rep.Queues {
			for _, iv := range ivs {
				if iv.HasNext && !iv.NextFirst.Before(tDrain) {
					gaps = append(gaps, iv.GapToNext)
				}
			}
		}
		if len(gaps) > 0 {
			sort.Slice(gaps, func(i, j int) bool { return gaps[i] < gaps[j] })
			t.Logf("%s: drain: %d worker handovers; gap between terms (workers' lines, 100 ms apart): median %s, max %s",
				be.name, len(gaps), gaps[len(gaps)/2].Round(time.Millisecond), gaps[len(gaps)-1].Round(time.Millisecond))
		}

		// status, --check and the metric show the drain.
		if _, dr, ok := c.membersDoc().member("r3"); !ok || !dr {
			t.Errorf("status members: r3 present %v, drained %v; want drained", ok, dr)
		}
		out, _, code := c.regentCmd("status", "--check")
		if code != 1 || !strings.Contains(out, "drained: node r3 is drained") || !strings.Contains(out, "kernel upgrade") {
			t.Errorf("status --check exit %d, want 1 with the drained warning:\n%s", code, out)
		}
		if v := r3.metric("regent_drained", ""); v != 1 {
			t.Errorf("r3 regent_drained = %v, want 1", v)
		}
		if v := r1.metric("regent_drained", ""); v != 0 {
			t.Errorf("r1 regent_drained = %v, want 0", v)
		}
		if !r3.log.contains("drained", "kernel upgrade") {
			t.Error("r3 logged no drained event")
		}

		// A stop of the drained replica hands nothing over; restarted
		// with the same node id it stays drained.
		terms := c.termsSeen()
		r3.signal(syscall.SIGTERM)
		if code := r3.wait(hangTimeout); code != 0 {
			t.Fatalf("r3 exit %d", code)
		}
		r3 = c.start(opts("r3"))
		eventually(t, hangTimeout, "r3 back, drained", func() bool {
			_, dr, ok := c.membersDoc().member("r3")
			return ok && dr
		})
		// Its runners campaign only after its first observation: it
		// must not take anything, for a few of the others' renewals.
		if _, ok := poll(ttl, 100*time.Millisecond, func() bool {
			counts, _ := c.leaderCounts()
			return counts["r3"] > 0
		}); ok {
			t.Fatalf("r3 restarted took a queue while drained")
		}
		if n := c.termsSeen(); n != terms {
			t.Errorf("%d new terms across the drained replica's restart, want none", n-terms)
		}

		// undrain: balanced again.
		tUndrain := time.Now()
		out, errOut, code := c.regentCmd("undrain", "--node", "r3")
		if code != 0 || !strings.Contains(out, "node r3 is no longer drained") {
			t.Fatalf("undrain: exit %d\n%s%s", code, out, errOut)
		}
		_, counts = c.waitBalanced([]string{"r1", "r2", "r3"}, nq, 3*time.Minute)
		t.Logf("%s: undrain: balanced again %s after undrain: %v", be.name, time.Since(tUndrain).Round(time.Millisecond), counts)
		if !r3.log.contains("undrained") {
			t.Error("r3 logged no undrained event")
		}
		watch.stop()
		c.check()
	})
}

// Two replicas on one host with the default http_addr (the incident's
// topology): the second does not exit on the taken port, one leads, the
// other follows and reports its max_rss_mb conflict, and both publish the
// address they actually listen on in status members.
func TestDefaultHTTPAddr(t *testing.T) {
	be := etcdBackend(t)
	c := newCluster(t, be)
	a := c.start(replicaOpts{node: "a", maxRSS: 16384, defaultHTTP: true})
	c.waitLeaderRunning("q", hangTimeout)
	b := c.start(replicaOpts{node: "b", maxRSS: 4096, defaultHTTP: true})
	eventually(t, hangTimeout, "b follows and reports its max_rss_mb conflict", func() bool {
		out, _, code := c.regentCmd("status", "--check")
		return code == 1 && strings.Contains(out, "config_conflict") && strings.Contains(out, "max_rss_mb leader=16384 follower=4096")
	})
	if a.exited() || b.exited() {
		t.Fatalf("a replica exited: a %v, b %v\n%s", a.exited(), b.exited(), b.log.String())
	}
	var doc membersDocT
	eventually(t, hangTimeout, "both members with their http_addr", func() bool {
		doc = c.membersDoc()
		ha, _, okA := doc.member("a")
		hb, _, okB := doc.member("b")
		return okA && okB && ha != "" && hb != ""
	})
	addrs := map[string]bool{}
	for _, r := range []*replica{a, b} {
		r.httpAddr, _, _ = doc.member(r.node)
		addrs[r.httpAddr] = true
		if code, _ := r.get("/healthz"); code != 200 {
			t.Errorf("%s: /healthz at its published address %s: %d", r.node, r.httpAddr, code)
		}
		if r.httpAddr != "127.0.0.1:9464" && !r.log.contains("http_addr in use") {
			t.Errorf("%s listens on %s without the warning", r.node, r.httpAddr)
		}
		if n := strings.Count(r.log.String(), "http_addr in use"); n > 1 {
			t.Errorf("%s warned %d times, want once", r.node, n)
		}
	}
	if len(addrs) != 2 {
		t.Fatalf("both replicas publish %v", addrs)
	}
	if !a.leads("q") || b.leads("q") {
		t.Fatalf("/leader at the published addresses: a %v b %v, want a only", a.leads("q"), b.leads("q"))
	}
	t.Logf("http addresses: a %s, b %s", a.httpAddr, b.httpAddr)
	c.check()
}

// session opens a read-write backend session for node (a member record
// of a replica that the test plays).
func (c *cluster) session(ctx context.Context, node string) election.Backend {
	c.t.Helper()
	host, _ := os.Hostname()
	opts := election.Options{
		Identity: election.Identity{Cluster: c.name, Node: node, Host: host, PID: os.Getpid()},
		Timing:   election.Timing{LeaseTTL: testTTL, RenewInterval: testRenew, RetryInterval: testRetry},
	}
	log := testenv.Logger(c.t, node)
	var b election.Backend
	var err error
	if u := flagValue(c.be.args, "--postgres-url"); u != "" {
		b, err = pgbackend.New(ctx, pgbackend.Config{URL: u}, opts, log)
	} else {
		b, err = etcdbackend.New(ctx, etcdbackend.Config{Endpoints: strings.Split(flagValue(c.be.args, "--etcd-endpoints"), ",")}, opts, log)
	}
	if err != nil {
		c.t.Fatalf("session of %s: %v", node, err)
	}
	return b
}

// A live member of an older version (its member record lists no
// features) makes drain refuse with one line naming it; an unknown node
// is refused; the only replica drained stands by: it keeps its queue, the
// drain is recorded and shown, and the wait runs out with one line.
func TestMixedVersionDrain(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		c := newCluster(t, be)
		a := c.start(replicaOpts{node: "a"})
		c.waitLeaderRunning("q", hangTimeout)

		out, errOut, code := c.regentCmd("drain", "--node", "nosuch")
		if code != 1 || !strings.Contains(errOut, "unknown node nosuch") || strings.Count(errOut, "\n") != 1 {
			t.Fatalf("drain of an unknown node: exit %d\n%s%s", code, out, errOut)
		}

		ctx, cancel := context.WithTimeout(context.Background(), hangTimeout)
		defer cancel()
		old := c.session(ctx, "old")
		if err := old.SetMember(ctx, election.RoleFollower, []byte(`{"version":"v0.9.0","queues":{"q":{"role":"follower"}}}`)); err != nil {
			t.Fatal(err)
		}
		out, errOut, code = c.regentCmd("drain", "--node", "a", "--wait", "5s")
		if code != 1 || !strings.Contains(errOut, "old (v0.9.0)") || strings.Count(errOut, "\n") != 1 {
			t.Fatalf("drain with an old member live: exit %d, want 1 and one line naming old (v0.9.0)\n%s%s", code, out, errOut)
		}
		t.Logf("%s: refused: %s", be.name, strings.TrimSpace(errOut))
		out, _, _ = c.regentCmd("status", "--check")
		if !strings.Contains(out, "REGENT INFO - cluster "+c.name+": mixed_versions") || !strings.Contains(out, "v0.9.0 (old)") {
			t.Errorf("status --check with an old member live: no mixed_versions info:\n%s", out)
		}
		if _, dr, _ := c.membersDoc().member("a"); dr {
			t.Fatal("a refused drain was recorded")
		}
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = old.Close(cctx)
		ccancel()

		// The old member gone, a is the only replica: drained, it keeps q.
		eventually(t, hangTimeout, "the old member gone", func() bool {
			_, _, ok := c.membersDoc().member("old")
			return !ok
		})
		out, errOut, code = c.regentCmd("drain", "--node", "a", "--wait", "3s", "--reason", "alone")
		if code != 1 || !strings.Contains(errOut, "not observed within 3s; the request stays recorded") || strings.Count(errOut, "\n") != 1 {
			t.Fatalf("drain of the only replica: exit %d, want 1 (it stands by)\n%s%s", code, out, errOut)
		}
		eventually(t, hangTimeout, "a drained, still leading q", func() bool {
			_, dr, _ := c.membersDoc().member("a")
			return dr && a.leads("q")
		})
		out, _, code = c.regentCmd("status", "--check")
		if code != 1 || !strings.Contains(out, "node a is drained") {
			t.Errorf("status --check exit %d:\n%s", code, out)
		}
		// A second replica shows up: a hands q over to it.
		c.start(replicaOpts{node: "b"})
		eventually(t, hangTimeout, "b leads q, a nothing", func() bool {
			n, _ := c.waitLeaderRunning("q", hangTimeout)
			return n == "b" && !a.leads("q")
		})
		out, errOut, code = c.regentCmd("undrain", "--node", "a")
		if code != 0 {
			t.Fatalf("undrain: exit %d\n%s%s", code, out, errOut)
		}
		c.check()
	})
}
