package integration

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/regentd/regent/integration/observer"
)

var (
	soakDuration = flag.Duration("soak-duration", 10*time.Minute, "how long the soak holds the cluster")
	soakQueues   = flag.Int("soak-queues", 50, "queues in the soak")
	soakBackends = flag.String("soak-backends", "etcd,postgres", "backends to soak")
)

// BenchmarkSoak runs 3 replicas × soak-queues queues on a loaded backend
// (pgbench beside Postgres) for soak-duration with no fault, and reports
// every leadership change: there must be none after the cluster settled.
// Run with `make soak`.
func BenchmarkSoak(b *testing.B) {
	for _, name := range strings.Split(*soakBackends, ",") {
		b.Run(name, func(b *testing.B) {
			var be backend
			if name == "etcd" {
				be = etcdBackend(b)
			} else {
				be = postgresBackend(b)
			}
			c := newCluster(b, be)
			var queues []string
			for i := 0; i < *soakQueues; i++ {
				queues = append(queues, fmt.Sprintf("soak-%03d", i))
			}
			ttl := 10 * time.Second
			var reps []*replica
			for _, n := range []string{"r1", "r2", "r3"} {
				reps = append(reps, c.start(replicaOpts{node: n, queues: queues, ttl: ttl, workerArgs: []string{"-interval", "100ms"}}))
			}
			eventually(b, 2*time.Minute, "every queue runs workers", func() bool {
				seen := map[string]bool{}
				for _, l := range c.lines() {
					seen[l.Queue] = true
				}
				return len(seen) == len(queues)
			})
			// Balancing moves queues after they first run: the soak counts
			// from a balanced, quiet cluster (no new term for a while).
			c.waitBalanced([]string{"r1", "r2", "r3"}, len(queues), 3*time.Minute)
			c.waitQuiet(queues, soakQuiet, 3*time.Minute)
			settled := time.Now()
			var load *exec.Cmd
			if name == "postgres" {
				load = startPgbench(b, be.pgURL, *soakDuration)
			}
			deadline := time.Now().Add(*soakDuration)
			for time.Now().Before(deadline) {
				for _, r := range reps {
					if r.exited() {
						b.Fatalf("replica %s exited during the soak", r.node)
					}
				}
				time.Sleep(5 * time.Second) // soak pacing: sample liveness, not a condition wait
			}
			if load != nil {
				_ = load.Process.Kill()
				_ = load.Wait()
			}
			rep := observer.Check(c.lines(), 0)
			changes := 0
			for q, ivs := range rep.Queues {
				for _, iv := range ivs {
					if iv.First.After(settled) {
						changes++
						b.Logf("leadership change on %s: term %d on %s from %s", q, iv.Term, iv.Node, iv.First.Format(time.RFC3339Nano))
					}
				}
			}
			per := map[string]int{}
			for _, ivs := range rep.Queues {
				per[ivs[len(ivs)-1].Node]++
			}
			fmt.Printf("\n### Soak (%s): 3 replicas, %d queues, %s%s\n\n", name, len(queues), *soakDuration, map[bool]string{true: ", pgbench -c 4 beside it", false: ""}[load != nil])
			fmt.Printf("| backend | duration | queues | leaders per replica | leadership changes after settling | overlaps | lines |\n|---|---|---|---|---|---|---|\n")
			fmt.Printf("| %s | %s | %d | %v | %d | %d | %d |\n", name, *soakDuration, len(queues), per, changes, len(rep.Overlaps), rep.Lines)
			if !rep.OK() {
				b.Fatalf("overlap during the soak:\n%s", strings.Join(rep.Overlaps, "\n"))
			}
			if changes > 0 {
				b.Errorf("%d spurious leadership changes on a healthy backend", changes)
			}
		})
	}
}

// soakQuiet is how long no new term may start before the soak counts.
const soakQuiet = 10 * time.Second

// waitQuiet waits until every queue runs workers and no new term has
// started on any of them for quiet.
func (c *cluster) waitQuiet(queues []string, quiet, d time.Duration) {
	c.t.Helper()
	eventually(c.t, d, fmt.Sprintf("no new term on %d queues for %s", len(queues), quiet), func() bool {
		rep := observer.Check(c.lines(), 0)
		var newest time.Time
		for _, q := range queues {
			ivs := rep.Queues[q]
			if len(ivs) == 0 {
				return false
			}
			if f := ivs[len(ivs)-1].First; f.After(newest) {
				newest = f
			}
		}
		return time.Since(newest) >= quiet
	})
}

// startPgbench loads the test Postgres server with pgbench in its own
// database for d.
func startPgbench(b *testing.B, url string, d time.Duration) *exec.Cmd {
	bin := "/usr/lib/postgresql/15/bin/pgbench"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, bin, "-i", "-s", "5", "-q", url).CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-c", "4", "-j", "2", "-T", fmt.Sprint(int(d.Seconds())+30), url)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	return cmd
}
