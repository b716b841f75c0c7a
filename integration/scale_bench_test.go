package integration

import (
	"context"
	"flag"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/regentd/regent/internal/testenv"
)

var (
	scaleQueues   = flag.String("scale-queues", "10,100,1000,5000", "comma-separated queue counts of BenchmarkScale")
	scaleBackends = flag.String("scale-backends", "etcd,postgres", "backends of BenchmarkScale and BenchmarkCost")
	scaleWindow   = flag.Duration("scale-window", 30*time.Second, "steady-state measurement window")
	scaleSettle   = flag.Duration("scale-settle-timeout", 10*time.Minute, "bound on settling and on failover in BenchmarkScale")
	scaleMaxConns = flag.Int("scale-pg-max-connections", 3200, "max_connections of the bench PostgreSQL server (the alternative needs one per queue per replica)")
	scaleAlt      = flag.Bool("scale-alt", true, "also measure the alternative (one session and one lock per queue)")
)

const (
	scaleReplicas = 3
	scaleTTL      = 10 * time.Second       // production default; renewal TTL/5
	scaleQuiet    = 10 * time.Second       // settling before the window
	scalePoll     = 250 * time.Millisecond // poll interval of settle and failover waits
	etcdRSSLimit  = 4 << 30
)

// scaleResult is one measured row.
type scaleResult struct {
	impl           string
	sessions       float64 // per replica
	req, writes    float64 // per second, server side
	kinds          map[string]float64
	rss, cpu       float64 // mean per replica: bytes, percent of one core
	settle, failov time.Duration
	spread         string // queues led per replica after settling
	// probes, unhealthy: /healthz polls of the replicas during the
	// window, and those not answered 200 (none: the elector has none).
	probes, unhealthy int
	failed            string // why the row could not be measured
}

// electors is one implementation's three replicas.
type electors struct {
	pids  []int
	kill  func(i int)
	leads func() []int // queues led per replica (killed ones: 0)
	// healthy reports whether replica i's /healthz answers 200 (nil: the
	// elector serves none).
	healthy func(i int) bool
}

// BenchmarkScale measures, for each backend and queue count, regent and
// the simplest alternative (one session and one lock per queue, see
// altelector) on 3 replicas: backend sessions per replica, server-side
// requests and writes per second at steady state, RSS and CPU per replica,
// the time to settle from a cold start (regent: every queue led and each
// replica leading floor(Q/3)..ceil(Q/3); the alternative: every queue
// led) and the time for a SIGKILLed replica's queues to have leaders
// again. Run with `make bench-scale`.
func BenchmarkScale(b *testing.B) {
	qs := parseCounts(b, "scale-queues", *scaleQueues)
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n### Scale: %d replicas, leadership-only queues (`--concurrency 0`), lease TTL %s, %s window\n\n", scaleReplicas, scaleTTL, *scaleWindow)
	fmt.Fprintln(&sb, "| backend | queues | elector | sessions / replica | backend req/s | writes/s | RSS MiB / replica | CPU % / replica | /healthz not 200 / polls | settle s | failover s | queues led per replica | note |")
	fmt.Fprintln(&sb, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	var notes []string
	for _, beName := range strings.Split(*scaleBackends, ",") {
		var pg *testenv.PostgresProc
		if beName == "postgres" {
			// One server for the backend's rows, a database per row.
			pg = benchPostgres(b, *scaleMaxConns)
		}
		var meterNote string
		for _, q := range qs {
			impls := []string{"regent"}
			if *scaleAlt {
				impls = append(impls, "alternative")
			}
			var res []scaleResult
			for _, impl := range impls {
				r := scaleResult{impl: impl, failed: "the run failed: see the log"}
				b.Run(fmt.Sprintf("%s/%d/%s", beName, q, impl), func(b *testing.B) {
					r, meterNote = runScale(b, beName, q, impl, pg)
					b.Log(r.line(beName, q))
				})
				res = append(res, r)
			}
			for _, r := range res {
				fmt.Fprintln(&sb, r.line(beName, q))
			}
			if len(res) == 2 {
				fmt.Fprintln(&sb, ratioLine(beName, q, res[0], res[1]))
			}
		}
		if meterNote != "" {
			notes = append(notes, meterNote)
		}
	}
	fmt.Fprintln(&sb)
	fmt.Fprintf(&sb, "Measured on the server: %s. RSS (VmRSS) and CPU (utime+stime over the window, percent of one core) of each replica process (`regent run`, which spawns nothing here; the alternative's process), mean of the %d. Settle: from starting the %d replicas at once. /healthz: every replica polled every 250 ms through the window (an answer later than the 5 s client timeout counts as not 200). Failover: SIGKILL of one replica until every queue has a leader again (polled every 250 ms). The alternative (integration/altelector): per queue, etcd: its own concurrency.Session (lease, client keep-alive every TTL/3) and concurrency.Election; Postgres: its own connection, pg_try_advisory_lock every %s until held, then SELECT 1 every %s. Leadership-only: no worker processes in any row.\n",
		strings.Join(notes, "; "), scaleReplicas, scaleReplicas, scaleTTL/5, scaleTTL/5)
	reportTable(b, sb.String())
}

func (r scaleResult) line(be string, q int) string {
	if r.failed != "" {
		return fmt.Sprintf("| %s | %d | %s | | | | | | | | | | not measured: %s |", be, q, r.impl, r.failed)
	}
	health := "–"
	if r.probes > 0 {
		health = fmt.Sprintf("%d / %d", r.unhealthy, r.probes)
	}
	return fmt.Sprintf("| %s | %d | %s | %.1f | %.1f | %.1f | %s | %.2f | %s | %s | %s | %s | %s |", be, q, r.impl,
		r.sessions, r.req, r.writes, mb(r.rss), r.cpu, health, secs(r.settle), secs(r.failov), r.spread, topKinds(r.kinds, 3))
}

func ratioLine(be string, q int, a, b scaleResult) string {
	if a.failed != "" || b.failed != "" {
		return fmt.Sprintf("| %s | %d | **regent / alternative** | | | | | | | | | | no ratio: a row was not measured |", be, q)
	}
	ratio := func(x, y float64) string {
		if y == 0 {
			return "–"
		}
		return fmt.Sprintf("**%.2f**", x/y)
	}
	return fmt.Sprintf("| %s | %d | **regent / alternative** | %s | %s | %s | %s | %s | | %s | %s | | |", be, q,
		ratio(a.sessions, b.sessions), ratio(a.req, b.req), ratio(a.writes, b.writes), ratio(a.rss, b.rss),
		ratio(a.cpu, b.cpu), ratio(a.settle.Seconds(), b.settle.Seconds()), ratio(a.failov.Seconds(), b.failov.Seconds()))
}

func scaleQueueNames(q int) []string {
	out := make([]string, q)
	for i := range out {
		out[i] = fmt.Sprintf("s%05d", i) // altelector names them alike
	}
	return out
}

// runScale measures one row. It returns the meter's description too.
func runScale(b *testing.B, beName string, q int, impl string, pg *testenv.PostgresProc) (scaleResult, string) {
	r := scaleResult{impl: impl}
	var meter serverMeter
	var be backend
	var etcdEPs []string
	// guard fails the row when the backend server's memory runs away (at
	// 1,000 queues etcd grew past 20 GiB and was OOM-killed): a shared
	// machine must not be taken down by a benchmark.
	guard := func() string { return "" }
	if beName == "etcd" {
		p := testenv.NewEtcd(b)
		guard = func() string {
			pid := p.PID()
			if pid == 0 {
				return "the etcd member died"
			}
			if u, err := readProcUsage(pid); err == nil && u.rssBytes > etcdRSSLimit {
				return fmt.Sprintf("etcd's RSS reached %s MiB (limit %s MiB): stopped", mb(float64(u.rssBytes)), mb(etcdRSSLimit))
			}
			return ""
		}
		etcdEPs = p.Endpoints()
		meter = newEtcdMeter(b, etcdEPs, p.MetricsURL())
		be = backend{name: "etcd", args: []string{"--backend", "etcd", "--etcd-endpoints", strings.Join(etcdEPs, ",")}}
	} else {
		u := pg.NewDatabase(b)
		meter = &pgMeter{url: u, adminURL: pg.URL()}
		be = backend{name: "postgres", args: []string{"--backend", "postgres", "--postgres-url", u}, pgURL: u}
		if impl == "alternative" && scaleReplicas*q+20 > *scaleMaxConns {
			r.failed = fmt.Sprintf("needs %d×%d = %d connections, over the bench server's max_connections %d (every connection is a server process; 2 cores)", scaleReplicas, q, scaleReplicas*q, *scaleMaxConns)
			return r, meter.what()
		}
	}
	c := newCluster(b, be)
	nodes := []string{"r1", "r2", "r3"}
	var el electors
	start := time.Now()
	if impl == "regent" {
		el = startRegentElectors(c, nodes, q)
	} else {
		el = startAltElectors(b, c, be, etcdEPs, nodes, q)
	}
	floor, ceil := q/scaleReplicas, (q+scaleReplicas-1)/scaleReplicas
	var counts []int
	var why string
	_, ok := poll(*scaleSettle, scalePoll, func() bool {
		if why = guard(); why != "" {
			return true
		}
		counts = el.leads()
		sum := 0
		for _, n := range counts {
			sum += n
		}
		if sum != q {
			return false
		}
		if impl == "regent" {
			for _, n := range counts {
				if n < floor || n > ceil {
					return false
				}
			}
		}
		return true
	})
	r.settle = time.Since(start)
	if why != "" {
		r.failed = fmt.Sprintf("while settling, after %s: %s (queues led per replica %v)", secs(r.settle), why, counts)
		return r, meter.what()
	}
	if !ok {
		r.failed = fmt.Sprintf("did not settle within %s (queues led per replica %v)", *scaleSettle, counts)
		return r, meter.what()
	}
	r.spread = fmt.Sprint(counts)
	b.Logf("%s %s Q=%d settled in %s: %v", beName, impl, q, r.settle.Round(time.Millisecond), counts)

	time.Sleep(scaleQuiet) // steady state: the last handovers and their records done
	sess := meter.sessions(b)
	total := 0
	for _, n := range sess {
		total += n
	}
	r.sessions = float64(total) / scaleReplicas
	b.Logf("sessions: %v", sess)
	u0 := make([]procUsage, len(el.pids))
	for i, pid := range el.pids {
		u0[i], _ = readProcUsage(pid)
	}
	c0 := meter.counts(b)
	r.probes, r.unhealthy = probeHealth(el, *scaleWindow)
	c1 := meter.counts(b)
	for i, pid := range el.pids {
		u1, err := readProcUsage(pid)
		if err != nil {
			r.failed = fmt.Sprintf("replica %s exited during the window", nodes[i])
			return r, meter.what()
		}
		r.rss += float64(u1.rssBytes) / float64(len(el.pids))
		r.cpu += cpuPercent(u0[i], u1) / float64(len(el.pids))
	}
	r.req, r.writes, r.kinds = rate(c0, c1)

	killAt := time.Now()
	el.kill(0)
	_, ok = poll(*scaleSettle, scalePoll, func() bool {
		if why = guard(); why != "" {
			return true
		}
		counts = el.leads()
		sum := 0
		for _, n := range counts[1:] {
			sum += n
		}
		return sum == q
	})
	r.failov = time.Since(killAt)
	if why != "" {
		r.failed = "during failover: " + why
	}
	if !ok {
		r.failed = fmt.Sprintf("the killed replica's queues had no leader within %s (%v)", *scaleSettle, counts)
	}
	return r, meter.what()
}

// probeHealth polls every replica's /healthz every scalePoll for d and
// counts the polls and the answers that were not 200 (none when the
// elector serves no /healthz: it only waits d).
func probeHealth(el electors, d time.Duration) (probes, unhealthy int) {
	end := time.Now().Add(d)
	for {
		if el.healthy != nil {
			for i := range el.pids {
				probes++
				if !el.healthy(i) {
					unhealthy++
				}
			}
		}
		left := time.Until(end)
		if left <= 0 {
			return probes, unhealthy
		}
		time.Sleep(min(scalePoll, left)) // the sampling period
	}
}

func startRegentElectors(c *cluster, nodes []string, q int) electors {
	queues := scaleQueueNames(q)
	var reps []*replica
	for _, n := range nodes {
		reps = append(reps, c.start(replicaOpts{node: n, queues: queues, ttl: scaleTTL,
			extra: []string{"--concurrency", "0", "--log-level", "info"}}))
	}
	el := electors{}
	for _, r := range reps {
		el.pids = append(el.pids, r.cmd.Process.Pid)
	}
	el.kill = func(i int) { reps[i].kill() }
	el.healthy = func(i int) bool { return reps[i].healthy() }
	el.leads = func() []int {
		out := make([]int, len(reps))
		for i, r := range reps {
			if r.exited() {
				continue
			}
			out[i], _ = r.regentLeads()
		}
		return out
	}
	return el
}

func startAltElectors(b *testing.B, c *cluster, be backend, eps []string, nodes []string, q int) electors {
	bin := altElector(b)
	var cmds []*exec.Cmd
	var dones []chan struct{}
	for _, n := range nodes {
		args := []string{"-backend", be.name, "-cluster", c.name, "-node", n, "-queues", strconv.Itoa(q),
			"-ttl", scaleTTL.String(), "-renew", (scaleTTL / 5).String()}
		if be.name == "etcd" {
			args = append(args, "-etcd-endpoints", strings.Join(eps, ","))
		} else {
			args = append(args, "-postgres-url", be.pgURL)
		}
		cmd := exec.Command(bin, args...)
		log := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		node := n
		b.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
			if s := log.String(); s != "" {
				b.Logf("altelector %s output (last 2 kB): %s", node, s[max(0, len(s)-2048):])
			}
		})
		cmds = append(cmds, cmd)
		dones = append(dones, done)
	}
	el := electors{}
	for _, cmd := range cmds {
		el.pids = append(el.pids, cmd.Process.Pid)
	}
	el.kill = func(i int) {
		_ = cmds[i].Process.Kill()
		<-dones[i]
	}
	index := map[string]int{}
	for i, n := range nodes {
		index[n] = i
	}
	if be.name == "etcd" {
		cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = cli.Close() })
		prefix := "/alt/" + c.name + "/"
		el.leads = func() []int {
			out := make([]int, len(nodes))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
			if err != nil {
				return out
			}
			type first struct {
				rev  int64
				node string
			}
			leader := map[string]first{}
			for _, kv := range resp.Kvs {
				rest := strings.TrimPrefix(string(kv.Key), prefix)
				queue, _, _ := strings.Cut(rest, "/")
				if f, ok := leader[queue]; !ok || kv.CreateRevision < f.rev {
					leader[queue] = first{kv.CreateRevision, string(kv.Value)}
				}
			}
			for _, f := range leader {
				if i, ok := index[f.node]; ok {
					out[i]++
				}
			}
			return out
		}
		return el
	}
	el.leads = func() []int {
		out := make([]int, len(nodes))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, be.pgURL)
		if err != nil {
			return out
		}
		defer conn.Close(context.Background())
		rows, err := conn.Query(ctx, `SELECT a.application_name, count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
			WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database() GROUP BY 1`)
		if err != nil {
			return out
		}
		defer rows.Close()
		for rows.Next() {
			var app string
			var n int
			if rows.Scan(&app, &n) != nil {
				return out
			}
			parts := strings.Split(app, ":")
			if i, ok := index[parts[len(parts)-1]]; ok && strings.HasPrefix(app, "alt:") {
				out[i] = n
			}
		}
		return out
	}
	return el
}
