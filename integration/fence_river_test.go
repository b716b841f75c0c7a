package integration

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/regentd/regent/fence"
	"github.com/regentd/regent/internal/faultproxy"
	"github.com/regentd/regent/internal/testenv"
)

// The proof on a real job system (issue 14): the River example worker
// (examples/riverworker, its own module) under real regent replicas,
// against a real PostgreSQL that holds River's jobs, the business table
// and the fence.

// riverQueue is the River queue (and regent queue, and fence key).
const riverQueue = "jobs"

// fenceWait bounds each wait of these tests.
const fenceWait = 20 * time.Second

var (
	riverOnce sync.Once
	riverBin  string
	riverErr  error
)

// riverworker builds the example worker once per test binary. It is a
// module of its own: its dependencies (River) stay out of regent's
// go.mod; the build needs them in the module cache (make test downloads
// them first: go -C examples/riverworker mod download).
func riverworker(t testing.TB) string {
	t.Helper()
	riverOnce.Do(func() {
		dir, err := os.MkdirTemp("", "regent-it-river-")
		if err != nil {
			riverErr = err
			return
		}
		riverBin = filepath.Join(dir, "riverworker")
		cmd := exec.Command("go", "build", "-C", "../examples/riverworker", "-o", riverBin, ".")
		if b, err := cmd.CombinedOutput(); err != nil {
			riverErr = fmt.Errorf("go build examples/riverworker: %v\n%s", err, b)
		}
	})
	if riverErr != nil {
		t.Fatal(riverErr)
	}
	return riverBin
}

// resource is the protected resource: a fresh database with River's
// schema, the example's table and the regent_fence schema.
type resource struct {
	t    testing.TB
	url  string
	host string // host:port, for a proxy in front
	rw   string // the riverworker binary
	conn *pgx.Conn
}

func newResource(t testing.TB, regent string) *resource {
	t.Helper()
	r := &resource{t: t, url: testenv.NewDatabase(t), rw: riverworker(t)}
	u, err := url.Parse(r.url)
	if err != nil {
		t.Fatal(err)
	}
	r.host = u.Host
	r.run("migrate")
	if b, err := exec.Command(regent, "fence", "install", "--fence-postgres-url", r.url).CombinedOutput(); err != nil {
		t.Fatalf("regent fence install: %v\n%s", err, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), fenceWait)
	defer cancel()
	if r.conn, err = pgx.Connect(ctx, r.url); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.conn.Close(context.Background()) })
	return r
}

// via is the resource's URL through a proxy at addr.
func (r *resource) via(addr string) string {
	u, _ := url.Parse(r.url)
	u.Host = addr
	return u.String()
}

// run runs a riverworker subcommand against the resource, returns stdout.
func (r *resource) run(args ...string) string {
	r.t.Helper()
	cmd := exec.Command(r.rw, args...)
	cmd.Env = append(os.Environ(), "RIVERWORKER_DATABASE_URL="+r.url)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		r.t.Fatalf("riverworker %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}

// insert inserts n jobs into the queue, each working for work, and
// returns their ids.
func (r *resource) insert(n int, work time.Duration) []int64 {
	r.t.Helper()
	var ids []int64
	for _, f := range strings.Fields(r.run("insert", "-queue", riverQueue, "-count", strconv.Itoa(n), "-work", work.String())) {
		id, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			r.t.Fatalf("insert printed %q", f)
		}
		ids = append(ids, id)
	}
	if len(ids) != n {
		r.t.Fatalf("inserted %d jobs, want %d", len(ids), n)
	}
	return ids
}

func (r *resource) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}

// job is a river_job row's state and last attempt's client id.
func (r *resource) job(id int64) (state, attemptedBy string) {
	r.t.Helper()
	ctx, cancel := r.ctx()
	defer cancel()
	err := r.conn.QueryRow(ctx, `SELECT state::text, coalesce(attempted_by[cardinality(attempted_by)], '')
		FROM river_job WHERE id = $1`, id).Scan(&state, &attemptedBy)
	if err != nil {
		r.t.Fatal(err)
	}
	return state, attemptedBy
}

// result is one example_results row.
type result struct {
	ID        int64
	JobID     int64
	Term      int64
	Owner     string
	Node      string
	WrittenAt time.Time
}

func (x result) String() string {
	return fmt.Sprintf("job %d term %d node %s owner %s at %s", x.JobID, x.Term, x.Node, x.Owner, x.WrittenAt.Format("15:04:05.000"))
}

// results returns the business rows, in the order they were written.
func (r *resource) results() []result {
	r.t.Helper()
	ctx, cancel := r.ctx()
	defer cancel()
	rows, err := r.conn.Query(ctx, `SELECT id, job_id, term, owner, node, written_at FROM example_results ORDER BY id`)
	if err != nil {
		r.t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[result])
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

// resultsOf returns the rows of job id.
func (r *resource) resultsOf(id int64) []result {
	var out []result
	for _, x := range r.results() {
		if x.JobID == id {
			out = append(out, x)
		}
	}
	return out
}

// refusals returns the fence's recorded refusals.
func (r *resource) refusals() []fence.Refusal {
	r.t.Helper()
	ctx, cancel := r.ctx()
	defer cancel()
	fs, err := fence.Refusals(ctx, r.conn, time.Time{})
	if err != nil {
		r.t.Fatal(err)
	}
	return fs
}

// fenceRow returns the fence row of the queue's key.
func (r *resource) fenceRow() (fence.Row, bool) {
	r.t.Helper()
	ctx, cancel := r.ctx()
	defer cancel()
	rows, err := fence.Rows(ctx, r.conn, []string{riverQueue})
	if err != nil {
		r.t.Fatal(err)
	}
	if len(rows) == 0 {
		return fence.Row{}, false
	}
	return rows[0], true
}

// riverReplica starts a replica of c running the example worker on the
// queue, its workers connecting to dbURL.
func (c *cluster) riverReplica(node, dbURL string, fenceOn bool) *replica {
	c.t.Helper()
	env := []string{"RIVERWORKER_DATABASE_URL=" + dbURL}
	if !fenceOn {
		env = append(env, "RIVERWORKER_FENCE=off")
	}
	return c.start(replicaOpts{node: node, queues: []string{riverQueue}, env: env,
		command: []string{riverworker(c.t), "work", "-poll-interval", "100ms"},
		extra:   []string{"--restart-initial-backoff", "200ms", "--restart-max-backoff", "1s"}})
}

var workerStartedRe = regexp.MustCompile(`msg=worker_started queue=\S+ term=(\d+)`)

// waitWorkerStarted waits until r's worker logged worker_started (the
// claim at its start passed) and returns its term.
func waitWorkerStarted(t *testing.T, r *replica) int64 {
	t.Helper()
	var term int64
	eventually(t, fenceWait, r.node+"'s riverworker started", func() bool {
		m := workerStartedRe.FindAllStringSubmatch(r.log.String(), -1)
		if m == nil {
			return false
		}
		term, _ = strconv.ParseInt(m[len(m)-1][1], 10, 64)
		return true
	})
	return term
}

// The delayed write (DESIGN, property 5). The leader's worker has sent
// the transaction that completes a job (claim, business write, the job's
// completion, in one flight) when its replica is SIGKILLed; the bytes are
// held in the network (a proxy that only this replica's workers go
// through). The next term's worker requeues the job, works it and
// completes it; then the network delivers the old transaction. With the
// fence it is refused (RF001, recorded with the old term and node) and
// every job has exactly one result, of the new term. The control run,
// without the claim, shows the stale write landing: the job's result
// written twice, the old term's after the new one's.
func TestFenceDelayedWrite(t *testing.T) {
	t.Run("fenced", func(t *testing.T) { delayedWrite(t, true) })
	t.Run("control", func(t *testing.T) { delayedWrite(t, false) })
}

func delayedWrite(t *testing.T, fenceOn bool) {
	began := time.Now()
	c := newCluster(t, etcdBackend(t))
	res := newResource(t, c.regent)
	proxy, err := faultproxy.Start(res.host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)

	a := c.riverReplica("a", res.via(proxy.Addr()), fenceOn)
	termA := waitWorkerStarted(t, a)
	b := c.riverReplica("b", res.url, fenceOn)
	c.waitFollower(riverQueue, "b")
	if fenceOn {
		if row, ok := res.fenceRow(); !ok || row.Term != termA {
			t.Fatalf("fence row %+v (%v), want term %d", row, ok, termA)
		}
	}

	// a's worker fetches the job; while it works, the path from a's
	// workers to the database is held.
	job := res.insert(1, 1500*time.Millisecond)[0]
	prefix := fmt.Sprintf("t%d/a/", termA)
	eventually(t, fenceWait, "a's worker runs the job", func() bool {
		state, by := res.job(job)
		return state == "running" && strings.HasPrefix(by, prefix)
	})
	proxy.SetMode(faultproxy.BlackholeToServer)
	eventually(t, fenceWait, "a's worker sent the job's completion", func() bool {
		return a.log.contains("completion_sent", fmt.Sprintf("job_id=%d ", job))
	})

	// The leading regent dies; its guard kills the worker, whose
	// transaction is on the wire. b's worker takes the next term.
	a.kill()
	termB := waitWorkerStarted(t, b)
	if termB <= termA {
		t.Fatalf("b's term %d, not after a's %d", termB, termA)
	}
	eventually(t, fenceWait, "b's worker completes the requeued job", func() bool {
		state, _ := res.job(job)
		rs := res.resultsOf(job)
		return state == "completed" && len(rs) == 1 && rs[0].Term == termB
	})
	// The queue goes on under b's term.
	more := res.insert(3, 0)
	eventually(t, fenceWait, "b's worker completes 3 more jobs", func() bool {
		for _, id := range more {
			if state, _ := res.job(id); state != "completed" {
				return false
			}
		}
		return true
	})

	// The network delivers a's transaction.
	delivered := time.Now()
	proxy.SetMode(faultproxy.Pass)
	jobs := append([]int64{job}, more...)
	if fenceOn {
		var ref fence.Refusal
		eventually(t, fenceWait, "the resource refuses and records a's stale claim", func() bool {
			for _, f := range res.refusals() {
				if f.Code == fence.CodeStaleTerm && f.Term == termA {
					ref = f
					return true
				}
			}
			return false
		})
		if ref.Key != riverQueue || ref.Node != "a" || ref.CurrentTerm != termB {
			t.Errorf("refusal %+v: want key %s, node a, current term %d", ref, riverQueue, termB)
		}
		for _, id := range jobs {
			rs := res.resultsOf(id)
			if len(rs) != 1 || rs[0].Term != termB || rs[0].Node != "b" {
				t.Errorf("job %d: results %v, want exactly one, of term %d (node b)", id, rs, termB)
			}
			if state, _ := res.job(id); state != "completed" {
				t.Errorf("job %d: state %s, want completed", id, state)
			}
		}
		t.Logf("FENCED: a (term %d) sent job %d's completion, held in the network; b (term %d) completed it; "+
			"delivered at +%s: refused with %s, recorded {key %s, term %d, node %s, current term %d, owner %s}; "+
			"results of job %d: %v; %d jobs, each completed once (%.1fs)",
			termA, job, termB, delivered.Sub(began).Round(time.Millisecond), ref.Code, ref.Key, ref.Term, ref.Node,
			ref.CurrentTerm, ref.Owner, job, res.resultsOf(job), len(jobs), time.Since(began).Seconds())
		return
	}

	eventually(t, fenceWait, "a's stale write lands (control run)", func() bool {
		return len(res.resultsOf(job)) == 2
	})
	rs := res.resultsOf(job)
	if rs[0].Term != termB || rs[1].Term != termA || !rs[1].WrittenAt.After(rs[0].WrittenAt) {
		t.Fatalf("job %d: results %v, want term %d's then term %d's", job, rs, termB, termA)
	}
	if len(res.refusals()) != 0 {
		t.Errorf("refusals recorded without the claim: %v", res.refusals())
	}
	t.Logf("CONTROL (RIVERWORKER_FENCE=off): a (term %d) sent job %d's completion, held in the network; b (term %d) completed it; "+
		"delivered: the stale write landed, job %d completed twice: %v (%.1fs)",
		termA, job, termB, job, rs, time.Since(began).Seconds())
}

// Two deployments, one resource: two regent deployments (other
// --cluster, same backend database) run the example worker on the same
// River queue, fence on. The resource's fence belongs to the first that
// claimed; the other's claims are refused (RF002, recorded with its
// owner), only the owner's workers write, and `status --check` of both
// deployments says foreign_owner (exit 2).
func TestFenceTwoDeployments(t *testing.T) {
	began := time.Now()
	be := postgresBackend(t)
	ca, cb := newCluster(t, be), newCluster(t, be)
	res := newResource(t, ca.regent)

	waitWorkerStarted(t, ca.riverReplica("a1", res.url, true))
	row, ok := res.fenceRow()
	if !ok {
		t.Fatal("no fence row after deployment A's worker started")
	}
	ownerA := row.Owner
	if !strings.HasPrefix(ownerA, ca.name+"/") {
		t.Fatalf("fence owner %q, want deployment A's (%s/...)", ownerA, ca.name)
	}

	b1 := cb.riverReplica("b1", res.url, true)
	var refB fence.Refusal
	eventually(t, fenceWait, "deployment B's claim refused and recorded", func() bool {
		for _, f := range res.refusals() {
			if f.Code == fence.CodeForeignOwner {
				refB = f
				return true
			}
		}
		return false
	})
	if !strings.HasPrefix(refB.Owner, cb.name+"/") || refB.Node != "b1" || refB.CurrentOwner != ownerA {
		t.Errorf("refusal %+v: want owner %s/..., node b1, current owner %s", refB, cb.name, ownerA)
	}
	// The refusal is recorded by the claim itself, before the worker
	// hears of it and its line reaches the replica's log.
	eventually(t, fenceWait, "b1's worker logs its refused claim", func() bool {
		return b1.log.contains("claim_refused", "code=RF002")
	})

	jobs := res.insert(10, 0)
	eventually(t, fenceWait, "the 10 jobs completed", func() bool {
		for _, id := range jobs {
			if state, _ := res.job(id); state != "completed" {
				return false
			}
		}
		return true
	})
	rs := res.results()
	if len(rs) != len(jobs) {
		t.Errorf("%d results for %d jobs: %v", len(rs), len(jobs), rs)
	}
	for _, x := range rs {
		if x.Owner != ownerA {
			t.Errorf("result %v written by another owner than %s", x, ownerA)
		}
	}
	if b1.log.contains("worker_started") {
		t.Errorf("deployment B's worker started working although the resource refused it")
	}

	for _, d := range []struct {
		name string
		c    *cluster
	}{{"B (not the owner)", cb}, {"A (the owner)", ca}} {
		var out string
		eventually(t, fenceWait, "status --check of deployment "+d.name+" says foreign_owner", func() bool {
			var code int
			out, _, code = d.c.regentCmd("status", "--check", "--fence-postgres-url", res.url)
			return code == 2 && strings.Contains(out, "foreign_owner")
		})
		t.Logf("status --check of deployment %s: exit 2: %s", d.name, strings.TrimSpace(out))
	}
	t.Logf("TWO DEPLOYMENTS: owner %s wrote all %d results; %s refused with %s (node %s, term %d, current owner %s); %d refusals recorded (%.1fs)",
		ownerA, len(rs), refB.Owner, refB.Code, refB.Node, refB.Term, refB.CurrentOwner, len(res.refusals()), time.Since(began).Seconds())
}
