package integration

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regentd/regent/internal/faultproxy"
)

// The incident of shared/context: two supervisors of one queue with
// different HOME, pid files and memory caps. Exactly one runs workers;
// the other reports the max_rss_mb conflict.
func TestIncidentTwoHomesOneQueue(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		c := newCluster(t, be)
		a := c.start(replicaOpts{node: "intended", maxRSS: 16384})
		leader, _ := c.waitLeaderRunning("q", hangTimeout)
		if leader != "intended" {
			t.Fatalf("leader = %s", leader)
		}
		b := c.start(replicaOpts{node: "ghost", maxRSS: 4096})
		eventually(t, hangTimeout, "ghost reports the max_rss_mb conflict", func() bool {
			return b.log.contains("config_conflict", "max_rss_mb leader=16384 follower=4096")
		})
		// Hold both for a while: only one node ever runs workers.
		time.Sleep(5 * testTTL / 2) // observation window, not a wait for a condition
		for _, l := range c.lines() {
			if l.Node != "intended" {
				t.Fatalf("node %s ran a worker (term %d) beside the leader", l.Node, l.Term)
			}
		}
		if a.exited() || b.exited() {
			t.Fatal("a replica exited")
		}
		doc := c.status()
		if !strings.Contains(fmt.Sprint(doc), "max_rss_mb") {
			t.Errorf("status does not show the conflict: %v", doc)
		}
		_, _, code := c.regentCmd("status", "--check")
		if code != 1 {
			t.Errorf("status --check exit %d, want 1 (warning: config conflict)", code)
		}
		c.check()
	})
}

// SIGKILL of the leader's supervisor: no orphan workers, takeover, no overlap.
func TestLeaderSIGKILL(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		c := newCluster(t, be)
		a := c.start(replicaOpts{node: "a", workerArgs: []string{"-spawn-child"}})
		c.waitLeaderRunning("q", hangTimeout)
		b := c.start(replicaOpts{node: "b"})
		c.waitFollower("q", "b")
		killedAt := time.Now()
		a.kill()
		eventually(t, testTTL+2*time.Second, "a's workers (and their children) are gone", func() bool {
			return len(c.workerPIDsAlive("a")) == 0
		})
		took := eventually(t, hangTimeout, "b runs workers", func() bool {
			_, ok := c.runningNodes("q", 50*time.Millisecond)["b"]
			return ok
		})
		t.Logf("%s: takeover %s after SIGKILL", be.name, time.Since(killedAt).Round(time.Millisecond))
		_ = took
		if b.exited() {
			t.Fatal("b exited")
		}
		c.check()
	})
}

// SIGSTOP of the leader for 3×TTL: its workers stop by the deadline, the
// follower takes over, and after SIGCONT the old leader spawns nothing.
func TestLeaderSIGSTOP(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		c := newCluster(t, be)
		a := c.start(replicaOpts{node: "a"})
		c.waitLeaderRunning("q", hangTimeout)
		b := c.start(replicaOpts{node: "b"})
		c.waitFollower("q", "b")
		a.signal(syscall.SIGSTOP)
		stoppedAt := time.Now()
		eventually(t, testTTL+2*time.Second, "a's workers stop by the deadline", func() bool {
			return len(c.workerPIDsAlive("a")) == 0
		})
		t.Logf("%s: frozen leader's workers gone %s after SIGSTOP", be.name, time.Since(stoppedAt).Round(time.Millisecond))
		eventually(t, hangTimeout, "b runs workers", func() bool {
			_, ok := c.runningNodes("q", 50*time.Millisecond)["b"]
			return ok
		})
		t.Logf("%s: takeover %s after SIGSTOP", be.name, time.Since(stoppedAt).Round(time.Millisecond))
		for time.Since(stoppedAt) < 3*testTTL {
			time.Sleep(50 * time.Millisecond) // keep a frozen for 3×TTL
		}
		a.signal(syscall.SIGCONT)
		contAt := time.Now()
		eventually(t, hangTimeout, "a is a follower again", func() bool {
			return a.log.contains("leadership_lost") && !a.leads("q")
		})
		time.Sleep(testTTL) // observation window: a must spawn nothing
		for _, l := range c.lines() {
			if l.Node == "a" && l.At.After(contAt) {
				t.Fatalf("a ran a worker after SIGCONT (term %d)", l.Term)
			}
		}
		if a.exited() || b.exited() {
			t.Fatal("a replica exited")
		}
		c.check()
	})
}

// The leader cut off from the backend by a blackholing proxy: no overlap,
// takeover within TTL plus a margin. Then the asymmetric cut.
func TestLeaderPartition(t *testing.T) {
	for _, mode := range []string{"blackhole", "asymmetric"} {
		t.Run(mode, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, be backend) {
				c := newCluster(t, be)
				p := c.proxy()
				a := c.start(replicaOpts{node: "a", backend: be.viaProxy(p.Addr())})
				c.waitLeaderRunning("q", hangTimeout)
				b := c.start(replicaOpts{node: "b"})
				c.waitFollower("q", "b")
				cutAt := time.Now()
				if mode == "blackhole" {
					p.SetMode(faultproxy.Blackhole)
				} else {
					p.CutServerSide()
				}
				eventually(t, testTTL+2*time.Second, "a's workers stop", func() bool {
					return len(c.workerPIDsAlive("a")) == 0
				})
				eventually(t, hangTimeout, "b runs workers", func() bool {
					_, ok := c.runningNodes("q", 50*time.Millisecond)["b"]
					return ok
				})
				took := time.Since(cutAt)
				t.Logf("%s %s: takeover %s after the cut", be.name, mode, took.Round(time.Millisecond))
				if took > 2*testTTL+5*time.Second {
					t.Errorf("takeover took %s, want within TTL plus a margin", took)
				}
				p.SetMode(faultproxy.Pass)
				eventually(t, hangTimeout, "a rejoins as follower", func() bool { return !a.exited() && !a.leads("q") })
				time.Sleep(testTTL) // observation window after healing
				if b.exited() {
					t.Fatal("b exited")
				}
				c.check()
			})
		})
	}
}

// --exclusive exits 2 when the queue is already led, naming the leader.
func TestExclusive(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		c := newCluster(t, be)
		c.start(replicaOpts{node: "a", maxRSS: 100})
		c.waitLeaderRunning("q", hangTimeout)
		b := c.start(replicaOpts{node: "b", extra: []string{"--exclusive"}})
		if code := b.wait(hangTimeout); code != 2 {
			t.Fatalf("exit code %d, want 2\n%s", code, b.log.String())
		}
		if !b.log.contains("already led by node a") || !b.log.contains("max_rss_mb=100") {
			t.Errorf("message does not name the leader and its config:\n%s", b.log.String())
		}
	})
}

// step-down hands over to the named node; the next leader's workers start
// right after the old ones stop.
func TestStepDown(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		c := newCluster(t, be)
		a := c.start(replicaOpts{node: "a"})
		c.waitLeaderRunning("q", hangTimeout)
		c.start(replicaOpts{node: "b"})
		c.start(replicaOpts{node: "c"})
		c.waitFollower("q", "b")
		c.waitFollower("q", "c")
		out, errOut, code := c.regentCmd("step-down", "--queue", "q", "--to", "c", "--wait", "20s")
		if code != 0 {
			t.Fatalf("step-down exit %d: %s %s", code, out, errOut)
		}
		eventually(t, hangTimeout, "c alone runs workers", func() bool {
			nodes := c.runningNodes("q", 50*time.Millisecond)
			_, ok := nodes["c"]
			return ok && len(nodes) == 1
		})
		r := c.check()
		for _, iv := range r.Queues["q"] {
			if iv.Node == "a" && iv.HasNext {
				t.Logf("%s: step-down gap between a's last and c's first line: %s", be.name, iv.GapToNext)
			}
		}
		if a.exited() {
			t.Fatal("a exited")
		}
	})
}

// SIGTERM: clean stop, exit 0, workers stopped, follower takes over.
func TestGracefulStop(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		c := newCluster(t, be)
		a := c.start(replicaOpts{node: "a"})
		c.waitLeaderRunning("q", hangTimeout)
		c.start(replicaOpts{node: "b"})
		c.waitFollower("q", "b")
		a.signal(syscall.SIGTERM)
		if code := a.wait(hangTimeout); code != 0 {
			t.Fatalf("exit %d after SIGTERM\n%s", code, a.log.String())
		}
		if n := len(c.workerPIDsAlive("a")); n != 0 {
			t.Fatalf("%d workers of a survive its clean stop", n)
		}
		eventually(t, hangTimeout, "b runs workers", func() bool {
			_, ok := c.runningNodes("q", 50*time.Millisecond)["b"]
			return ok
		})
		c.check()
	})
}
