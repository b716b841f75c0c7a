package integration

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/election/etcdbackend"
	"github.com/regentd/regent/election/pgbackend"
	"github.com/regentd/regent/internal/faultproxy"
	"github.com/regentd/regent/internal/testenv"
)

var (
	benchRuns   = flag.Int("bench-runs", 5, "runs per failover scenario")
	benchTTLs   = flag.String("bench-ttls", "2s", "comma-separated lease TTLs to measure")
	benchReport = flag.String("bench-report", "", "also write the markdown table to this file")
	benchOnly   = flag.String("bench-scenarios", "", "comma-separated scenarios (default all)")
	benchBEs    = flag.String("bench-backends", "etcd,postgres", "comma-separated backends to measure")
)

// row is one line of the benchmark table.
type row struct {
	scenario, backend string
	ttl               time.Duration
	samples           []time.Duration
	overlap           time.Duration
	failures          int
	note              string
}

func stats(ds []time.Duration) (min, med, max time.Duration) {
	if len(ds) == 0 {
		return
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[0], s[len(s)/2], s[len(s)-1]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

func writeTable(b *testing.B, rows []row, title string) {
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n### %s\n\n", title)
	fmt.Fprintln(&sb, "| scenario | backend | lease TTL | runs | min ms | median ms | max ms | max overlap ms | failed runs | note |")
	fmt.Fprintln(&sb, "|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		mn, md, mx := stats(r.samples)
		fmt.Fprintf(&sb, "| %s | %s | %s | %d | %s | %s | %s | %s | %d | %s |\n", r.scenario, r.backend, r.ttl, len(r.samples), ms(mn), ms(md), ms(mx), ms(r.overlap), r.failures, r.note)
	}
	fmt.Print(sb.String())
	if *benchReport != "" {
		f, err := os.OpenFile(*benchReport, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		f.WriteString(sb.String())
	}
}

// failoverScenario injects a fault into replica a (the leader) and
// returns the instant of the injection.
type failoverScenario struct {
	name    string
	note    string
	proxied bool
	inject  func(c *cluster, a *replica, p *faultproxy.Proxy) time.Time
}

var scenarios = []failoverScenario{
	{name: "graceful stop (SIGTERM)", note: "old workers stopped, then resign", inject: func(c *cluster, a *replica, _ *faultproxy.Proxy) time.Time {
		t := time.Now()
		a.signal(syscall.SIGTERM)
		return t
	}},
	{name: "step-down", note: "from the step-down command", inject: func(c *cluster, a *replica, _ *faultproxy.Proxy) time.Time {
		t := time.Now()
		if _, errOut, code := c.regentCmd("step-down", "--queue", "q", "--wait", "30s"); code != 0 {
			c.t.Fatalf("step-down: %s", errOut)
		}
		return t
	}},
	{name: "SIGKILL supervisor", note: "guards kill workers and release the term", inject: func(c *cluster, a *replica, _ *faultproxy.Proxy) time.Time {
		t := time.Now()
		_ = a.cmd.Process.Kill()
		return t
	}},
	{name: "SIGSTOP supervisor", note: "bound: TTL + 1 s", inject: func(c *cluster, a *replica, _ *faultproxy.Proxy) time.Time {
		t := time.Now()
		a.signal(syscall.SIGSTOP)
		return t
	}},
	{name: "partition (blackhole)", note: "bound: TTL + 1 s", proxied: true, inject: func(c *cluster, a *replica, p *faultproxy.Proxy) time.Time {
		t := time.Now()
		p.SetMode(faultproxy.Blackhole)
		return t
	}},
	{name: "asymmetric cut", note: "server side closed, client hears nothing", proxied: true, inject: func(c *cluster, a *replica, p *faultproxy.Proxy) time.Time {
		t := time.Now()
		p.CutServerSide()
		return t
	}},
}

// BenchmarkFailover measures, per scenario, backend and lease TTL, the
// time from the fault to the new leader's first worker line, and the
// overlap of the two terms' workers (must be 0). Run with `make bench`.
func BenchmarkFailover(b *testing.B) {
	var ttls []time.Duration
	for _, s := range strings.Split(*benchTTLs, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			b.Fatal(err)
		}
		ttls = append(ttls, d)
	}
	only := map[string]bool{}
	for _, s := range strings.Split(*benchOnly, ",") {
		if s = strings.TrimSpace(s); s != "" {
			only[s] = true
		}
	}
	var rows []row
	for _, ttl := range ttls {
		for _, sc := range scenarios {
			if len(only) > 0 && !only[sc.name] {
				continue
			}
			for _, beName := range strings.Split(*benchBEs, ",") {
				beName = strings.TrimSpace(beName)
				if beName == "" {
					continue
				}
				if beName != "etcd" && beName != "postgres" {
					b.Fatalf("unknown backend %q in -bench-backends", beName)
				}
				r := row{scenario: sc.name, backend: beName, ttl: ttl, note: sc.note}
				for i := 0; i < *benchRuns; i++ {
					b.Run(fmt.Sprintf("%s/%s/%s/%d", strings.ReplaceAll(sc.name, " ", "_"), beName, ttl, i), func(b *testing.B) {
						d, ov, ok := runFailover(b, sc, beName, ttl)
						if !ok {
							r.failures++
							return
						}
						r.samples = append(r.samples, d)
						r.overlap = max(r.overlap, ov)
					})
				}
				rows = append(rows, r)
			}
		}
	}
	writeTable(b, rows, "Failover: fault → new leader's first worker line (regent binary, 2 replicas, concurrency 1)")
}

func runFailover(b *testing.B, sc failoverScenario, beName string, ttl time.Duration) (time.Duration, time.Duration, bool) {
	var be backend
	if beName == "etcd" {
		be = etcdBackend(b)
	} else {
		be = postgresBackend(b)
	}
	c := newCluster(b, be)
	o := replicaOpts{node: "a", ttl: ttl}
	var p *faultproxy.Proxy
	if sc.proxied {
		p = c.proxy()
		o.backend = be.viaProxy(p.Addr())
	}
	a := c.start(o)
	c.waitLeaderRunning("q", hangTimeout)
	c.start(replicaOpts{node: "b", ttl: ttl})
	c.waitFollower("q", "b")
	at := sc.inject(c, a, p)
	var first time.Time
	eventually(b, 4*ttl+hangTimeout, "b's first worker line", func() bool {
		for _, l := range c.lines() {
			if l.Node == "b" {
				first = l.At
				return true
			}
		}
		return false
	})
	time.Sleep(200 * time.Millisecond) // let a late line of a, if any, land before judging
	_ = a.cmd.Process.Signal(syscall.SIGCONT)
	if p != nil {
		p.SetMode(faultproxy.Pass)
	}
	rep := c.check()
	return first.Sub(at), rep.MaxOverlap, true
}

// BenchmarkHandover measures, on the backends alone, the time from a
// leader's Resign to the next campaigner's Campaign returning, over 20
// handovers of one queue between two replicas on separate sessions.
func BenchmarkHandover(b *testing.B) {
	var rows []row
	for _, beName := range []string{"etcd", "postgres"} {
		r := row{scenario: "resign → next leader (backend API, 20 handovers)", backend: beName, ttl: 2 * time.Second}
		b.Run(beName, func(b *testing.B) {
			cluster := fmt.Sprintf("bench-%d", time.Now().UnixNano())
			var pgURL string
			var eps []string
			if beName == "etcd" {
				eps = testenv.Etcd(b)
			} else {
				pgURL = testenv.NewDatabase(b)
			}
			open := func(node string) election.Backend {
				opts := election.Options{Identity: election.Identity{Cluster: cluster, Node: node, Host: "bench", PID: os.Getpid()},
					Timing: election.Timing{LeaseTTL: 2 * time.Second, RenewInterval: 400 * time.Millisecond, RetryInterval: 200 * time.Millisecond}}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				var be election.Backend
				var err error
				if beName == "etcd" {
					be, err = etcdbackend.New(ctx, etcdbackend.Config{Endpoints: eps}, opts, testenv.Logger(b, node))
				} else {
					be, err = pgbackend.New(ctx, pgbackend.Config{URL: pgURL}, opts, testenv.Logger(b, node))
				}
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = be.Close(context.Background()) })
				return be
			}
			x, y := open("x"), open("y")
			ctx := context.Background()
			leader, err := x.Campaign(ctx, "h", []byte(`{}`))
			if err != nil {
				b.Fatal(err)
			}
			waiting := y
			holder := x
			for i := 0; i < 20; i++ {
				got := make(chan election.Leadership, 1)
				go func(be election.Backend) {
					l, err := be.Campaign(ctx, "h", []byte(`{}`))
					if err != nil {
						b.Error(err)
					}
					got <- l
				}(waiting)
				time.Sleep(50 * time.Millisecond) // let the campaigner start waiting
				start := time.Now()
				if err := leader.Resign(ctx); err != nil {
					b.Fatal(err)
				}
				next := <-got
				if next == nil {
					b.FailNow()
				}
				r.samples = append(r.samples, time.Since(start))
				if next.Term() <= leader.Term() {
					b.Fatalf("term did not increase: %d -> %d", leader.Term(), next.Term())
				}
				leader = next
				holder, waiting = waiting, holder
			}
			_ = holder
		})
		rows = append(rows, r)
	}
	writeTable(b, rows, "Handover: Resign → next Campaign returns (backend API, loopback)")
}
