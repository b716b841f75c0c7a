package integration

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// These run on etcd only: worker supervision does not depend on the
// backend, which the other tests cover on both.
func etcdOnly(t *testing.T, f func(t *testing.T, be backend)) {
	t.Run("etcd", func(t *testing.T) { f(t, etcdBackend(t)) })
}

// pids of queue q's workers seen in the observer file, in first-seen order.
func (c *cluster) workerPIDs(queue string) []int {
	seen := map[int]bool{}
	var out []int
	for _, l := range c.lines() {
		if l.Queue == queue && !seen[l.PID] {
			seen[l.PID] = true
			out = append(out, l.PID)
		}
	}
	return out
}

// A worker whose process tree goes over max_rss_mb is killed by the RSS
// watchdog (with the figure logged) and restarted, not counted as a crash.
func TestRSSWatchdogRestarts(t *testing.T) {
	etcdOnly(t, func(t *testing.T, be backend) {
		c := newCluster(t, be)
		a := c.start(replicaOpts{node: "a", maxRSS: 40, workerArgs: []string{"-alloc-mb", "80"}})
		eventually(t, hangTimeout, "two RSS watchdog kills", func() bool {
			return strings.Count(a.log.String(), "rss_watchdog_kill") >= 2
		})
		if !a.log.contains("rss_watchdog_kill", "limit_mb=40") {
			t.Errorf("kill not logged with its figures:\n%s", a.log.String())
		}
		if len(c.workerPIDs("q")) < 2 {
			t.Errorf("worker not restarted: pids %v", c.workerPIDs("q"))
		}
		if !a.log.contains("worker_exited", "cause=rss_watchdog") {
			t.Errorf("worker_exited does not name the RSS watchdog as the cause")
		}
		if a.log.contains("worker_exited", "cause=crash") {
			t.Errorf("an RSS kill was counted as a crash")
		}
		if !a.leads("q") {
			t.Error("leader lost its leadership over a worker's memory")
		}
	})
}

var backoffRe = regexp.MustCompile(`regent: backoff: .*delay=([0-9.]+m?s)`)

// Crashing workers restart with exponential backoff, capped.
func TestCrashBackoff(t *testing.T) {
	etcdOnly(t, func(t *testing.T, be backend) {
		c := newCluster(t, be)
		a := c.start(replicaOpts{node: "a", workerArgs: []string{"-exit-after", "50ms", "-exit-code", "3"},
			extra: []string{"--restart-initial-backoff", "200ms", "--restart-max-backoff", "800ms", "--max-crashes", "3"}})
		var delays []time.Duration
		eventually(t, hangTimeout, "five backoffs", func() bool {
			delays = delays[:0]
			for _, m := range backoffRe.FindAllStringSubmatch(a.log.String(), -1) {
				d, err := time.ParseDuration(m[1])
				if err == nil {
					delays = append(delays, d)
				}
			}
			return len(delays) >= 5
		})
		want := []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 800 * time.Millisecond, 800 * time.Millisecond}
		for i, w := range want {
			// Up to 10% jitter is taken off, never added.
			if delays[i] > w || delays[i] < w*89/100 {
				t.Errorf("backoff %d = %s, want %s minus up to 10%%", i+1, delays[i], w)
			}
		}
		if !a.log.contains("crash_loop") {
			t.Error("crash loop (max_crashes) not reported")
		}
		eventually(t, hangTimeout, "status shows the crash loop", func() bool {
			out, _, code := c.regentCmd("status", "--check")
			return code == 1 && strings.Contains(out, "crash_loop")
		})
	})
}

// A worker that stops touching its heartbeat file is restarted.
func TestWedgedWorkerRestarted(t *testing.T) {
	etcdOnly(t, func(t *testing.T, be backend) {
		c := newCluster(t, be)
		a := c.start(replicaOpts{node: "a", workerArgs: []string{"-heartbeat-for", "300ms"},
			extra: []string{"--heartbeat-timeout", "400ms", "--startup-grace", "200ms"}})
		eventually(t, hangTimeout, "a wedged worker restarted", func() bool {
			return a.log.contains("wedged_restart") && a.log.contains("worker_exited", "cause=wedged") && len(c.workerPIDs("q")) >= 2
		})
	})
}
