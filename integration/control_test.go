package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/integration/observer"
)

// statusQueue returns queue's entry of `status --json`, nil when absent.
func (c *cluster) statusQueue(queue string) map[string]any {
	c.t.Helper()
	qs, _ := c.status()["queues"].([]any)
	for _, q := range qs {
		if qm, _ := q.(map[string]any); qm["queue"] == queue {
			return qm
		}
	}
	return nil
}

// leaderOf returns the node, term and worker pids of queue's leader in
// `status --json` ("" when none).
func (c *cluster) leaderOf(queue string) (node string, term int64, pids []int) {
	c.t.Helper()
	out, _, code := c.regentCmd("status", "--json", "--queue", queue)
	if code != 0 {
		return "", 0, nil
	}
	var doc statusDocT
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Queues) != 1 || doc.Queues[0].Leader == nil {
		return "", 0, nil
	}
	l := doc.Queues[0].Leader
	for _, w := range l.Workers {
		if w.PID > 0 && w.State == "running" {
			pids = append(pids, w.PID)
		}
	}
	sort.Ints(pids)
	return l.Node, l.Term, pids
}

// minRunning is the least number of workers of queue that ran at once at
// any instant in [from, to], from the workers' own lines: each worker
// process runs from its first line to its last.
func minRunning(lines []observer.Line, queue string, from, to time.Time) int {
	type span struct{ first, last time.Time }
	spans := map[int]*span{}
	for _, l := range lines {
		if l.Queue != queue {
			continue
		}
		s, ok := spans[l.PID]
		if !ok {
			spans[l.PID] = &span{l.At, l.At}
			continue
		}
		if l.At.Before(s.first) {
			s.first = l.At
		}
		if l.At.After(s.last) {
			s.last = l.At
		}
	}
	least := -1
	for _, l := range lines {
		if l.Queue != queue || l.At.Before(from) || l.At.After(to) {
			continue
		}
		n := 0
		for _, s := range spans {
			if !l.At.Before(s.first) && !l.At.After(s.last) {
				n++
			}
		}
		if least < 0 || n < least {
			least = n
		}
	}
	return least
}

// pause: the leader keeps the queue and its term and stops its workers
// within stop_timeout; the pause shows in status (--json, --check,
// human) and regent_paused; a leader elected while paused (the paused
// leader SIGKILLed) starts nothing; resume starts the workers.
func TestPauseResume(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		c := newCluster(t, be)
		extra := []string{"--concurrency", "2"}
		a := c.start(replicaOpts{node: "a", extra: extra})
		leader, term := c.waitLeaderRunning("q", hangTimeout)
		b := c.start(replicaOpts{node: "b", extra: extra})
		c.waitFollower("q", "b")
		byNode := map[string]*replica{"a": a, "b": b}
		lead, follow := byNode[leader], a
		if leader == "a" {
			follow = b
		}

		began := time.Now()
		out, errOut, code := c.regentCmd("pause", "--queue", "q", "--reason", "migration 42", "--wait", "30s")
		if code != 0 {
			t.Fatalf("pause exit %d: %s%s", code, out, errOut)
		}
		eventually(t, hangTimeout, "no worker of the paused leader alive", func() bool { return len(c.workerPIDsAlive(leader)) == 0 })
		// stop_timeout is 1s; the test worker stops at SIGTERM.
		if took := time.Since(began); took > 1*time.Second+3*time.Second {
			t.Errorf("workers stopped %s after the pause, want within stop_timeout (1s) and the record's propagation", took)
		}
		if !lead.leads("q") || follow.leads("q") {
			t.Errorf("/leader after the pause: %s=%v %s=%v, want the same leader", lead.node, lead.leads("q"), follow.node, follow.leads("q"))
		}
		if n, tm, _ := c.leaderOf("q"); n != leader || tm != term {
			t.Errorf("leader after the pause %s term %d, want %s term %d", n, tm, leader, term)
		}
		for _, r := range []*replica{a, b} {
			r := r
			eventually(t, hangTimeout, r.node+" regent_paused 1", func() bool { return r.metric("regent_paused", `{queue="q"}`) == 1 })
		}
		if !lead.log.contains(`paused`, `migration 42`) {
			t.Error("no paused event on the leader")
		}
		out, _, code = c.regentCmd("status", "--check")
		if code != 1 || !strings.Contains(out, "REGENT WARNING - queue q: paused:") || !strings.Contains(out, "migration 42") {
			t.Errorf("status --check while paused: exit %d\n%s", code, out)
		}
		p, _ := c.statusQueue("q")["paused"].(map[string]any)
		if p == nil || p["reason"] != "migration 42" || !strings.Contains(p["by"].(string), "@") || p["since"] == nil {
			t.Errorf("status --json paused: %v", p)
		}
		human, _, _ := c.regentCmd("status")
		t.Logf("regent status during a pause:\n%s", human)
		if !strings.Contains(human, "paused") {
			t.Error("the human status does not show the pause")
		}

		// The paused leader dies: the next leader stays paused.
		killed := time.Now()
		lead.kill()
		eventually(t, hangTimeout, follow.node+" leads", func() bool { return follow.leads("q") })
		var term2 int64
		eventually(t, hangTimeout, follow.node+" in status as the leader", func() bool {
			n, tm, _ := c.leaderOf("q")
			term2 = tm
			return n == follow.node && tm > term
		})
		out, errOut, code = c.regentCmd("pause", "--queue", "q", "--wait", "30s") // already paused: waits for the new leader
		if code != 0 || !strings.Contains(out, "already paused") {
			t.Errorf("pause of a paused queue: exit %d: %s%s", code, out, errOut)
		}
		if n := len(c.workerPIDsAlive(follow.node)); n != 0 {
			t.Errorf("the leader elected while paused runs %d worker(s)", n)
		}

		resumed := time.Now()
		out, errOut, code = c.regentCmd("resume", "--queue", "q", "--wait", "30s")
		if code != 0 {
			t.Fatalf("resume exit %d: %s%s", code, out, errOut)
		}
		eventually(t, hangTimeout, "workers of the new leader running", func() bool {
			_, tm, pids := c.leaderOf("q")
			return tm == term2 && len(pids) == 2
		})
		c.waitLeaderRunning("q", hangTimeout)
		for _, l := range c.lines() {
			if l.Term == term2 && l.At.Before(resumed) {
				t.Fatalf("a worker of term %d (elected while paused, %s after the kill) ran at %s, before the resume", term2, resumed.Sub(killed), l.At)
			}
		}
		eventually(t, hangTimeout, "regent_paused 0", func() bool { return follow.metric("regent_paused", `{queue="q"}`) == 0 })
		eventually(t, hangTimeout, "status --check OK", func() bool {
			out, _, _ := c.regentCmd("status", "--check")
			return !strings.Contains(out, "paused")
		})

		// The operator log: status --history lists the actions.
		hist, _, _ := c.regentCmd("status", "--history")
		for _, want := range []string{"operator actions", "pause", "resume", "migration 42"} {
			if !strings.Contains(hist, want) {
				t.Errorf("status --history lacks %q:\n%s", want, hist)
			}
		}

		// An unknown queue is one line, exit 1.
		_, errOut, code = c.regentCmd("pause", "--queue", "nope")
		if code != 1 || !strings.Contains(errOut, "unknown queue nope") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("pause of an unknown queue: exit %d: %q", code, errOut)
		}
		c.check()
	})
}

// restart --rolling with concurrency 3: at every instant at least 2
// workers run, the term never changes, every worker pid changes.
func TestRestartRolling(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		c := newCluster(t, be)
		extra := []string{"--concurrency", "3"}
		a := c.start(replicaOpts{node: "a", extra: extra})
		leader, term := c.waitLeaderRunning("q", hangTimeout)
		b := c.start(replicaOpts{node: "b", extra: extra})
		c.waitFollower("q", "b")
		byNode := map[string]*replica{"a": a, "b": b}
		var before []int
		eventually(t, hangTimeout, "3 workers running", func() bool {
			_, _, before = c.leaderOf("q")
			return len(before) == 3
		})

		from := time.Now()
		out, errOut, code := c.regentCmd("restart", "--queue", "q", "--rolling", "--reason", "new build", "--wait", "30s")
		to := time.Now()
		if code != 0 {
			t.Fatalf("restart exit %d: %s%s", code, out, errOut)
		}
		t.Logf("restart --rolling took %s: %s", to.Sub(from).Round(time.Millisecond), strings.TrimSpace(out))
		n, tm, after := c.leaderOf("q")
		if n != leader || tm != term {
			t.Errorf("leader after the restart %s term %d, want %s term %d", n, tm, leader, term)
		}
		if len(after) != 3 {
			t.Errorf("workers after the restart: %v", after)
		}
		for _, pid := range after {
			if slices.Contains(before, pid) {
				t.Errorf("worker pid %d was not replaced (before %v, after %v)", pid, before, after)
			}
		}
		lines := c.lines()
		for _, l := range lines {
			if l.Queue == "q" && l.Term != term {
				t.Fatalf("a worker line of term %d during the restart; the term was %d", l.Term, term)
			}
		}
		if m := minRunning(lines, "q", from, to); m < 2 {
			t.Errorf("only %d worker(s) ran at some instant of the rolling restart, want at least 2", m)
		}
		if !byNode[leader].log.contains("workers_restarted", "rolling=true") {
			t.Error("no workers_restarted event")
		}
		c.check()
	})
}

// writeConfig replaces node's config file (the harness's regent.yaml).
func (c *cluster) writeConfig(node, cfg string) {
	c.t.Helper()
	if err := os.WriteFile(filepath.Join(c.home(node), "regent.yaml"), []byte(cfg), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// leaderMaxRSS is the max_rss_mb queue's leader publishes, -1 if none.
func (c *cluster) leaderMaxRSS(queue string) int {
	out, _, _ := c.regentCmd("status", "--json", "--queue", queue)
	var doc statusDocT
	if json.Unmarshal([]byte(out), &doc) != nil || len(doc.Queues) != 1 || doc.Queues[0].Leader == nil {
		return -1
	}
	return doc.Queues[0].Leader.Config.MaxRSSMB
}

// SIGHUP reloads the config: a changed max_rss_mb in every replica's file
// restarts the leader's workers in place with it (same leader and term,
// every pid new), the conflict of the rollout's middle clears; a broken
// file and a changed cluster are refused with one line each and the
// running config stays; a queue added is campaigned for and one removed
// is released.
func TestReloadConfig(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		c := newCluster(t, be)
		// conf is the queues part of a file; the harness adds the
		// cluster to the first, writeConfig to the next.
		conf := func(rss int, queues ...string) string {
			var b strings.Builder
			b.WriteString("queues:\n")
			for _, q := range queues {
				fmt.Fprintf(&b, "  %s: {concurrency: 2, max_rss_mb: %d}\n", q, rss)
			}
			return b.String()
		}
		write := func(node, cluster, rest string) { c.writeConfig(node, "cluster: "+cluster+"\n"+rest) }
		a := c.start(replicaOpts{node: "a", config: conf(1000, "q"), clusterInFile: true})
		leader, term := c.waitLeaderRunning("q", hangTimeout)
		b := c.start(replicaOpts{node: "b", config: conf(1000, "q"), clusterInFile: true})
		c.waitFollower("q", "b")
		byNode := map[string]*replica{"a": a, "b": b}
		lead, follow := byNode[leader], a
		if leader == "a" {
			follow = b
		}
		var before []int
		eventually(t, hangTimeout, "2 workers running", func() bool {
			_, _, before = c.leaderOf("q")
			return len(before) == 2
		})

		// The rollout: the leader first (its followers then conflict with
		// it), then the follower.
		write(lead.node, c.name, conf(2000, "q"))
		lead.signal(syscall.SIGHUP)
		eventually(t, hangTimeout, "the leader publishes max_rss_mb 2000", func() bool { return c.leaderMaxRSS("q") == 2000 })
		human, _, _ := c.regentCmd("status")
		t.Logf("regent status in the middle of a rolling reload:\n%s", human)
		eventually(t, hangTimeout, "the follower's conflict", func() bool {
			out, _, code := c.regentCmd("status", "--check")
			return code == 1 && strings.Contains(out, "max_rss_mb leader=2000 follower=1000")
		})
		write(follow.node, c.name, conf(2000, "q"))
		follow.signal(syscall.SIGHUP)
		eventually(t, hangTimeout, "no conflict left", func() bool {
			out, _, code := c.regentCmd("status", "--check")
			return code == 0 && strings.HasPrefix(out, "REGENT OK")
		})
		eventually(t, hangTimeout, "equal config generations", func() bool {
			q := c.statusQueue("q")
			l, _ := q["leader"].(map[string]any)
			fs, _ := q["followers"].([]any)
			if l == nil || len(fs) != 1 {
				return false
			}
			f, _ := fs[0].(map[string]any)
			return l["config_generation"] != "" && l["config_generation"] == f["config_generation"]
		})
		var after []int
		eventually(t, hangTimeout, "every worker replaced", func() bool {
			var n string
			var tm int64
			n, tm, after = c.leaderOf("q")
			if n != leader || tm != term {
				t.Fatalf("the reload changed the leader: %s term %d, was %s term %d", n, tm, leader, term)
			}
			if len(after) != 2 {
				return false
			}
			for _, p := range after {
				if slices.Contains(before, p) {
					return false
				}
			}
			return true
		})
		eventually(t, hangTimeout, "workers_restarted (config_reload) on the leader", func() bool {
			return lead.log.contains("workers_restarted", "rolling=true", "reason=config_reload")
		})
		if !lead.log.contains("config_reloaded", `changed=["q"]`) {
			t.Error("the leader logged no config_reloaded")
		}
		if !follow.log.contains("config_reloaded") {
			t.Error("the follower logged no config_reloaded")
		}

		// Refused: a broken file, a changed cluster. One line each; the
		// running config stays.
		write(lead.node, c.name, "queues: [\n")
		lead.signal(syscall.SIGHUP)
		eventually(t, hangTimeout, "config_reload_failed", func() bool { return lead.log.contains("config_reload_failed") })
		write(lead.node, "elsewhere", conf(3000, "q"))
		lead.signal(syscall.SIGHUP)
		eventually(t, hangTimeout, "config_reload_failed naming cluster", func() bool {
			return lead.log.contains("config_reload_failed", "cluster cannot change on reload")
		})
		if n := strings.Count(lead.log.String(), "config_reload_failed"); n != 2 {
			t.Errorf("%d config_reload_failed lines for two refused reloads, want 2", n)
		}
		if got := c.leaderMaxRSS("q"); got != 2000 {
			t.Errorf("max_rss_mb %d after refused reloads, want 2000 kept", got)
		}
		if n, tm, pids := c.leaderOf("q"); n != leader || tm != term || !slices.Equal(pids, after) {
			t.Errorf("refused reloads touched the queue: %s term %d pids %v", n, tm, pids)
		}

		// A queue added, one removed (on every replica).
		for _, r := range []*replica{a, b} {
			write(r.node, c.name, conf(2000, "r"))
			r.signal(syscall.SIGHUP)
		}
		c.waitLeaderRunning("r", hangTimeout)
		eventually(t, hangTimeout, "q released", func() bool {
			n, _, _ := c.leaderOf("q")
			return n == "" && len(c.liveWorkersOf("q")) == 0
		})
		c.check()
	})
}

// liveWorkersOf lists the live worker processes of queue.
func (c *cluster) liveWorkersOf(queue string) []liveWorker {
	var out []liveWorker
	for _, w := range c.liveWorkers() {
		if w.queue == queue {
			out = append(out, w)
		}
	}
	return out
}

// oldMember opens a session on the cluster's backend as node and
// publishes a member record of an older regent: one that announces no
// feature (it would ignore a pause). The session ends with the test.
func (c *cluster) oldMember(node string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b := c.session(ctx, node)
	c.t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		_ = b.Close(cctx)
	})
	payload := `{"version":"v0.9.0","queues":{"q":{"role":"follower","config":{"command":["w"],"concurrency":1}}}}`
	if err := b.SetMember(ctx, election.RoleFollower, []byte(payload)); err != nil {
		c.t.Fatalf("old member's record: %v", err)
	}
}

// While a live member does not announce the pause feature (an older
// regent during a rolling upgrade), pause refuses with one line naming
// it, and records nothing.
func TestPauseRefusedByOldMember(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		c := newCluster(t, be)
		c.start(replicaOpts{node: "a"})
		c.waitLeaderRunning("q", hangTimeout)
		c.oldMember("old")
		_, errOut, code := c.regentCmd("pause", "--queue", "q", "--wait", "5s")
		if code != 1 || !strings.Contains(errOut, "old (v0.9.0)") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Fatalf("pause with an old member: exit %d: %q", code, errOut)
		}
		if p := c.statusQueue("q")["paused"]; p != nil {
			t.Errorf("a refused pause was recorded: %v", p)
		}
		c.waitLeaderRunning("q", hangTimeout)
	})
}
