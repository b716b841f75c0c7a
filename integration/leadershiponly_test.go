package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// childPIDs lists the live (not zombie) direct children of pid.
func childPIDs(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:]) // state, ppid, ...
		if len(f) < 2 || f[0] == "Z" {
			continue
		}
		if pp, _ := strconv.Atoi(f[1]); pp == pid {
			c, _ := strconv.Atoi(e.Name())
			out = append(out, c)
		}
	}
	return out
}

// A leadership-only queue (--concurrency 0) gets a leader, shows it in
// status and /leader with no workers, fails over when the leader is
// killed, and never spawns a process (guard or worker) on any replica.
func TestLeadershipOnly(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		c := newCluster(t, be)
		o := func(node string) replicaOpts {
			return replicaOpts{node: node, extra: []string{"--concurrency", "0"}}
		}
		a := c.start(o("a"))
		eventually(t, hangTimeout, "a leads q", func() bool { return a.leads("q") })
		b := c.start(o("b"))
		c.waitFollower("q", "b")

		noProcesses := func(when string) {
			t.Helper()
			for _, r := range []*replica{a, b} {
				if r.exited() {
					continue
				}
				if kids := childPIDs(r.cmd.Process.Pid); len(kids) > 0 {
					t.Fatalf("%s: replica %s has child processes %v (leadership only must spawn none)", when, r.node, kids)
				}
			}
			if ws := c.liveWorkers(); len(ws) > 0 {
				t.Fatalf("%s: worker processes running: %+v", when, ws)
			}
		}
		leaderOf := func() (string, int64, int, int) {
			out, errOut, code := c.regentCmd("status", "--json")
			if code != 0 {
				t.Fatalf("status --json exit %d: %s", code, errOut)
			}
			var doc statusDocT
			if err := json.Unmarshal([]byte(out), &doc); err != nil {
				t.Fatal(err)
			}
			if len(doc.Queues) != 1 || doc.Queues[0].Leader == nil {
				return "", 0, 0, 0
			}
			l := doc.Queues[0].Leader
			return l.Node, l.Term, l.Config.Concurrency, len(l.Workers)
		}
		node, termA, conc, workers := leaderOf()
		if node != "a" || conc != 0 || workers != 0 {
			t.Fatalf("status: leader %q concurrency %d workers %d, want a, 0, 0", node, conc, workers)
		}
		if v := a.metric("regent_workers", `{queue="q"}`); v != 0 {
			t.Errorf("a regent_workers = %v, want 0", v)
		}
		noProcesses("a leads")
		if _, errOut, code := c.regentCmd("status", "--check"); code != 0 {
			t.Errorf("status --check exit %d, want 0 (no crash_loop or other alarm): %s", code, errOut)
		}

		a.kill()
		eventually(t, hangTimeout, "b leads q after a was killed", func() bool { return b.leads("q") })
		eventually(t, hangTimeout, "status names b the leader", func() bool {
			n, term, _, w := leaderOf()
			return n == "b" && term > termA && w == 0
		})
		noProcesses("b leads")
		if ls := c.lines(); len(ls) > 0 {
			t.Fatalf("the observer file has %d worker lines; leadership only must run no worker", len(ls))
		}
	})
}
