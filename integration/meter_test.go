package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/regentd/regent/internal/testenv"
)

// Server-side and /proc meters shared by the cost and scale benchmarks.
// Requests are counted where they land (the etcd member's own metrics,
// PostgreSQL's statistics), so no client can under-report them.

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat
// (100 on every Linux architecture Go supports).
const clockTicks = 100

// procUsage is one sample of a process's resident set and CPU time.
type procUsage struct {
	rssBytes int64
	cpu      time.Duration
	at       time.Time
}

// readProcUsage reads VmRSS from /proc/<pid>/status and utime+stime from
// /proc/<pid>/stat (the process itself, not its children).
func readProcUsage(pid int) (procUsage, error) {
	u := procUsage{at: time.Now()}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for _, l := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				u.rssBytes = kb << 10
			}
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, err
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return u, fmt.Errorf("/proc/%d/stat: no comm", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state); utime is field 14
	if len(f) < 13 {
		return u, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	u.cpu = time.Duration(ut+st) * time.Second / clockTicks
	return u, nil
}

// cpuPercent is the CPU used between two samples, in percent of one core.
func cpuPercent(a, b procUsage) float64 {
	wall := b.at.Sub(a.at)
	if wall <= 0 {
		return 0
	}
	return 100 * float64(b.cpu-a.cpu) / float64(wall)
}

// serverCounts is a sample of a backend server's cumulative counters.
type serverCounts struct {
	at       time.Time
	requests float64            // requests received by the server
	writes   float64            // records written (etcd puts+deletes; Postgres rows inserted, updated, deleted)
	byKind   map[string]float64 // requests by method (etcd) or nothing
}

// serverMeter samples one backend server from the outside.
type serverMeter interface {
	// counts samples the cumulative counters.
	counts(t testing.TB) serverCounts
	// sessions returns the backend sessions (etcd leases, Postgres
	// connections) by owner ("" when the owner cannot be told).
	sessions(t testing.TB) map[string]int
	// what names the counters, for the table notes.
	what() string
}

// rate is (b - a) per second for the requests, the writes and each kind.
func rate(a, b serverCounts) (req, writes float64, kinds map[string]float64) {
	secs := b.at.Sub(a.at).Seconds()
	kinds = map[string]float64{}
	for k, v := range b.byKind {
		if d := v - a.byKind[k]; d > 0 {
			kinds[k] = d / secs
		}
	}
	return (b.requests - a.requests) / secs, (b.writes - a.writes) / secs, kinds
}

// topKinds formats the largest per-kind rates, e.g. "Txn 3.1, Range 0.4".
func topKinds(kinds map[string]float64, n int) string {
	type kv struct {
		k string
		v float64
	}
	var s []kv
	for k, v := range kinds {
		s = append(s, kv{k, v})
	}
	sort.Slice(s, func(i, j int) bool { return s[i].v > s[j].v })
	var out []string
	for i := 0; i < len(s) && i < n; i++ {
		out = append(out, fmt.Sprintf("%s %.1f", s[i].k, s[i].v))
	}
	return strings.Join(out, ", ")
}

// etcdMeter scrapes a member's /metrics and lists its leases.
type etcdMeter struct {
	metricsURL string
	cli        *clientv3.Client
}

func newEtcdMeter(t testing.TB, endpoints []string, metricsURL string) *etcdMeter {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return &etcdMeter{metricsURL: metricsURL, cli: cli}
}

var promLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([0-9.eE+-]+|NaN)$`)

// scrape returns every sample of the Prometheus text at url.
func scrape(t testing.TB, url string) map[string]float64 {
	t.Helper()
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := promLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, _ := strconv.ParseFloat(m[3], 64)
		out[m[1]+m[2]] = v
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return out
}

var grpcMethod = regexp.MustCompile(`grpc_method="([^"]+)"`)

// counts: requests are gRPC messages received (a unary call is one; each
// message on a stream, e.g. a lease keep-alive, is one), so streams are
// counted as they go and not when they close.
func (m *etcdMeter) counts(t testing.TB) serverCounts {
	c := serverCounts{byKind: map[string]float64{}}
	for k, v := range scrape(t, m.metricsURL) {
		switch {
		case strings.HasPrefix(k, "grpc_server_msg_received_total{"):
			c.requests += v
			if mm := grpcMethod.FindStringSubmatch(k); mm != nil {
				c.byKind[mm[1]] += v
			}
		case k == "etcd_mvcc_put_total" || k == "etcd_mvcc_delete_total":
			c.writes += v
		}
	}
	c.at = time.Now()
	return c
}

// sessions counts the member's leases (one owner: etcd does not say whose).
func (m *etcdMeter) sessions(t testing.TB) map[string]int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := m.cli.Leases(ctx)
	if err != nil {
		t.Fatalf("etcd leases: %v", err)
	}
	return map[string]int{"": len(r.Leases)}
}

func (m *etcdMeter) what() string {
	return "etcd: req = gRPC messages received by the member (grpc_server_msg_received_total), writes = etcd_mvcc_put_total + etcd_mvcc_delete_total, sessions = leases (LeaseLeases)"
}

// pgMeter reads one database's statistics on a server started by
// benchPostgres (with pg_stat_statements).
type pgMeter struct {
	url      string // the measured database
	adminURL string // the server's postgres database, with pg_stat_statements
}

// benchPostgres starts a private server for a benchmark: pg_stat_statements
// loaded (its counts are kept in shared memory as statements end, while
// pg_stat_database's transaction counts of a session that touches no
// table wait for a later flush) and max_connections as given.
func benchPostgres(b *testing.B, maxConns int) *testenv.PostgresProc {
	p := testenv.NewPostgresWith(b, testenv.PostgresOptions{MaxConnections: maxConns,
		Settings: []string{"shared_preload_libraries=pg_stat_statements", "pg_stat_statements.track_utility=on"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.URL())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
		b.Fatal(err)
	}
	return p
}

func pgConn(t testing.TB, u string) (*pgx.Conn, context.Context, func()) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		cancel()
		t.Fatalf("postgres meter: %v", err)
	}
	return c, ctx, func() { _ = c.Close(context.Background()); cancel() }
}

var spaces = regexp.MustCompile(`\s+`)

// counts: requests are statements executed in the database
// (pg_stat_statements calls, by statement), writes the rows inserted,
// updated and deleted in its tables (pg_stat_user_tables; flushed by the
// sessions within a second or so, exact over a long window).
func (m *pgMeter) counts(t testing.TB) serverCounts {
	sc := serverCounts{byKind: map[string]float64{}}
	c, ctx, done := pgConn(t, m.adminURL)
	rows, err := c.Query(ctx, `SELECT query, calls::float8 FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
		WHERE d.datname = $1`, dbName(m.url))
	if err != nil {
		done()
		t.Fatalf("pg_stat_statements: %v", err)
	}
	for rows.Next() {
		var q string
		var n float64
		if err := rows.Scan(&q, &n); err != nil {
			done()
			t.Fatal(err)
		}
		if strings.Contains(q, "pg_stat_user_tables") {
			continue // the meter's own
		}
		q = strings.TrimSpace(spaces.ReplaceAllString(q, " "))
		if len(q) > 40 {
			q = q[:40] + "…"
		}
		sc.requests += n
		sc.byKind["`"+strings.ReplaceAll(q, "|", "/")+"`"] += n
	}
	err = rows.Err()
	done()
	if err != nil {
		t.Fatal(err)
	}
	c, ctx, done = pgConn(t, m.url)
	defer done()
	if err := c.QueryRow(ctx, `SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::float8 FROM pg_stat_user_tables`).Scan(&sc.writes); err != nil {
		t.Fatalf("pg_stat_user_tables: %v", err)
	}
	sc.at = time.Now()
	return sc
}

// dbName is the database of a postgres:// URL.
func dbName(u string) string {
	pu, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(pu.Path, "/")
}

// sessions counts the database's connections by application_name.
func (m *pgMeter) sessions(t testing.TB) map[string]int {
	c, ctx, done := pgConn(t, m.url)
	defer done()
	rows, err := c.Query(ctx, `SELECT coalesce(application_name, ''), count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() GROUP BY 1`)
	if err != nil {
		t.Fatalf("pg_stat_activity: %v", err)
	}
	out := map[string]int{}
	for rows.Next() {
		var app string
		var n int
		if err := rows.Scan(&app, &n); err != nil {
			t.Fatal(err)
		}
		out[app] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func (m *pgMeter) what() string {
	return "Postgres: req = statements executed in the database (pg_stat_statements calls), writes = rows inserted+updated+deleted (pg_stat_user_tables), sessions = pg_stat_activity rows by application_name"
}

// regentLeads counts the queues a replica leads, from its /metrics.
func (r *replica) regentLeads() (int, bool) {
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + r.httpAddr + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "regent_is_leader{") && strings.HasSuffix(l, "} 1") {
			n++
		}
	}
	return n, sc.Err() == nil
}

// reportTable prints a markdown table and appends it to -bench-report.
func reportTable(t testing.TB, text string) {
	fmt.Print(text)
	if *benchReport == "" {
		return
	}
	f, err := os.OpenFile(*benchReport, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

var (
	altOnce sync.Once
	altBin  string
	altErr  error
)

// altElector builds integration/altelector once per test binary.
func altElector(t testing.TB) string {
	t.Helper()
	binaries(t) // the build directory
	altOnce.Do(func() {
		altBin = filepath.Join(buildDir, "altelector")
		if b, err := exec.Command("go", "build", "-o", altBin, "./altelector").CombinedOutput(); err != nil {
			altErr = fmt.Errorf("go build ./altelector: %v\n%s", err, b)
		}
	})
	if altErr != nil {
		t.Fatal(altErr)
	}
	return altBin
}

// mb formats bytes as MiB.
func mb(b float64) string { return fmt.Sprintf("%.1f", b/(1<<20)) }

// secs formats a duration in seconds.
func secs(d time.Duration) string { return fmt.Sprintf("%.1f", d.Seconds()) }
