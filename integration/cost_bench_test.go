package integration

import (
	"flag"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regentd/regent/internal/testenv"
)

var (
	costQueues     = flag.String("cost-queues", "1,100,1000", "comma-separated queue counts of BenchmarkCost")
	costWorkersMax = flag.Int("cost-workers-max", 100, "BenchmarkCost runs one real worker per queue up to this many queues, leadership only (--concurrency 0) above")
)

// costRow is one measured row of BenchmarkCost.
type costRow struct {
	backend             string
	queues, concurrency int
	sessions            string
	leaderReq, writes   float64
	kinds               map[string]float64
	followerReq         float64
	leaderRSS, leadCPU  float64
	followRSS, follCPU  float64
	leaderCPU2          float64
	failed              string
}

// BenchmarkCost measures the steady-state cost of regent (issue 5): for 1,
// 100 and 1,000 queues, first one replica alone (leader of every queue),
// then with a second replica (follower of every queue; balancing off so
// that roles stay put): server-side requests and writes per second, the
// backend sessions, and RSS and CPU of each `regent run` process (not its
// guards or workers). Run with `make bench-cost`.
func BenchmarkCost(b *testing.B) {
	qs := parseCounts(b, "cost-queues", *costQueues)
	var rows []costRow
	notes := map[string]string{}
	for _, beName := range strings.Split(*scaleBackends, ",") {
		var pg *testenv.PostgresProc
		if beName == "postgres" {
			pg = benchPostgres(b, testenv.DefaultMaxConnections)
		}
		for _, q := range qs {
			r := costRow{backend: beName, queues: q, failed: "the run failed: see the log"}
			b.Run(fmt.Sprintf("%s/%d", beName, q), func(b *testing.B) {
				var note string
				r, note = runCost(b, beName, q, pg)
				notes[beName] = note
			})
			rows = append(rows, r)
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n### Steady-state cost: one replica leading every queue, then a second following every queue (lease TTL %s, renewal %s, %s windows)\n\n", scaleTTL, scaleTTL/5, *scaleWindow)
	fmt.Fprintln(&sb, "| backend | queues | workers / queue | sessions (leader; +follower) | leader alone: backend req/s | writes/s | + follower: backend req/s | leader RSS MiB | leader CPU % (alone; with follower) | follower RSS MiB | follower CPU % | requests by kind (leader alone, /s) |")
	fmt.Fprintln(&sb, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		if r.failed != "" {
			fmt.Fprintf(&sb, "| %s | %d | | | | | | | | | | not measured: %s |\n", r.backend, r.queues, r.failed)
			continue
		}
		fmt.Fprintf(&sb, "| %s | %d | %d | %s | %.1f | %.1f | %.1f | %s | %.2f; %.2f | %s | %.2f | %s |\n", r.backend, r.queues, r.concurrency,
			r.sessions, r.leaderReq, r.writes, r.followerReq, mb(r.leaderRSS), r.leadCPU, r.leaderCPU2, mb(r.followRSS), r.follCPU, topKinds(r.kinds, 4))
	}
	fmt.Fprintln(&sb)
	var ns []string
	for _, be := range strings.Split(*scaleBackends, ",") {
		if n := notes[be]; n != "" {
			ns = append(ns, n)
		}
	}
	fmt.Fprintf(&sb, "Measured on the server: %s. \"+ follower\" is the rate the second replica added (both windows' difference). RSS is VmRSS of the `regent run` process; CPU is its utime+stime over the window in percent of one core. Queues up to %d run one real worker each (the test worker, writing a line a second, under its guard); above, leadership only (`--concurrency 0`).\n", strings.Join(ns, "; "), *costWorkersMax)
	reportTable(b, sb.String())
}

func runCost(b *testing.B, beName string, q int, pg *testenv.PostgresProc) (costRow, string) {
	r := costRow{backend: beName, queues: q}
	var meter serverMeter
	var be backend
	if beName == "etcd" {
		p := testenv.NewEtcd(b)
		meter = newEtcdMeter(b, p.Endpoints(), p.MetricsURL())
		be = backend{name: "etcd", args: []string{"--backend", "etcd", "--etcd-endpoints", strings.Join(p.Endpoints(), ",")}}
	} else {
		u := pg.NewDatabase(b)
		meter = &pgMeter{url: u, adminURL: pg.URL()}
		be = backend{name: "postgres", args: []string{"--backend", "postgres", "--postgres-url", u}, pgURL: u}
	}
	c := newCluster(b, be)
	r.concurrency = 1
	if q > *costWorkersMax {
		r.concurrency = 0
	}
	opts := func(node string) replicaOpts {
		return replicaOpts{node: node, queues: scaleQueueNames(q), ttl: scaleTTL, workerArgs: []string{"-interval", "1s"},
			extra: []string{"--concurrency", strconv.Itoa(r.concurrency), "--balance=false", "--log-level", "info"}}
	}
	a := c.start(opts("leader"))
	if _, ok := poll(*scaleSettle, scalePoll, func() bool { n, _ := a.regentLeads(); return n == q }); !ok {
		r.failed = fmt.Sprintf("the replica did not lead all %d queues within %s", q, *scaleSettle)
		return r, meter.what()
	}
	if r.concurrency > 0 {
		if _, ok := poll(*scaleSettle, scalePoll, func() bool { return len(c.liveWorkers()) == q }); !ok {
			r.failed = "workers did not all start"
			return r, meter.what()
		}
	}
	window := func(pids ...int) ([]procUsage, []procUsage, serverCounts, serverCounts) {
		time.Sleep(scaleQuiet)
		u0 := make([]procUsage, len(pids))
		for i, p := range pids {
			u0[i], _ = readProcUsage(p)
		}
		c0 := meter.counts(b)
		time.Sleep(*scaleWindow)
		c1 := meter.counts(b)
		u1 := make([]procUsage, len(pids))
		for i, p := range pids {
			var err error
			if u1[i], err = readProcUsage(p); err != nil {
				b.Fatalf("replica exited during the window: %v", err)
			}
		}
		return u0, u1, c0, c1
	}
	sessions := func() string {
		var parts []string
		for k, v := range meter.sessions(b) {
			switch {
			case beName == "etcd":
				k = "leases"
			case k == "":
				k = "(no application_name)"
			default:
				k = k[strings.LastIndexByte(k, ':')+1:] // regent:<cluster>:<node>
			}
			parts = append(parts, fmt.Sprintf("%s=%d", k, v))
		}
		sort.Strings(parts)
		return strings.Join(parts, " ")
	}
	u0, u1, c0, c1 := window(a.cmd.Process.Pid)
	r.leaderReq, r.writes, r.kinds = rate(c0, c1)
	r.leaderRSS, r.leadCPU = float64(u1[0].rssBytes), cpuPercent(u0[0], u1[0])
	s1 := sessions()

	f := c.start(opts("follower"))
	if _, ok := poll(*scaleSettle, scalePoll, func() bool {
		client := http.Client{Timeout: 5 * time.Second}
		resp, err := client.Get("http://" + f.httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}); !ok {
		r.failed = "the follower never became ready"
		return r, meter.what()
	}
	u0, u1, c0, c1 = window(a.cmd.Process.Pid, f.cmd.Process.Pid)
	if n, _ := a.regentLeads(); n != q {
		r.failed = fmt.Sprintf("the leader lost queues to the follower (leads %d of %d)", n, q)
		return r, meter.what()
	}
	both, _, _ := rate(c0, c1)
	r.followerReq = both - r.leaderReq
	r.leaderCPU2 = cpuPercent(u0[0], u1[0])
	r.followRSS, r.follCPU = float64(u1[1].rssBytes), cpuPercent(u0[1], u1[1])
	r.sessions = s1 + "; " + sessions()
	r.failed = ""
	return r, meter.what()
}
