package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/regentd/regent/integration/observer"
	"github.com/regentd/regent/internal/faultproxy"
	"github.com/regentd/regent/internal/testenv"
)

// Test timing: short leases so that faults resolve in seconds.
const (
	testTTL     = 2 * time.Second
	testRenew   = 400 * time.Millisecond
	testMargin  = 300 * time.Millisecond
	testRetry   = 200 * time.Millisecond
	workerTick  = 5 * time.Millisecond
	overlapTol  = 0 // any overlap at all fails
	hangTimeout = 60 * time.Second
)

// leanGuard: the harness builds regent-guard beside regent, as shipped;
// -lean-guard=false builds regent alone, whose guards are then regent
// itself (the fallback), to compare the two.
var leanGuard = flag.Bool("lean-guard", true, "build the lean guard (regent-guard) beside regent; false: guards run regent itself")

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// binaries builds regent, the lean guard beside it (regent-guard, which
// regent runs its guards from, as shipped) and the test worker once per
// test binary.
func binaries(t testing.TB) (regent, worker string) {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "regent-it-bin-")
		if buildErr != nil {
			return
		}
		pkgs := map[string]string{"../cmd/regent": "regent", "./testworker": "testworker"}
		if *leanGuard {
			pkgs["../cmd/regent-guard"] = "regent-guard"
		}
		for pkg, out := range pkgs {
			cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, out), pkg)
			if b, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "regent"), filepath.Join(buildDir, "testworker")
}

// backend is one election backend the tests run against.
type backend struct {
	name string
	// args are regent's backend flags for a direct connection.
	args []string
	// addr is the server's host:port, for putting a proxy in front.
	addr string
	// viaProxy returns the backend flags going through a proxy at addr.
	viaProxy func(addr string) []string
	// pgURL is the superuser URL (postgres only).
	pgURL string
}

// forEachBackend runs f as a subtest against real etcd and PostgreSQL.
func forEachBackend(t *testing.T, f func(t *testing.T, be backend)) {
	t.Run("etcd", func(t *testing.T) { f(t, etcdBackend(t)) })
	t.Run("postgres", func(t *testing.T) { f(t, postgresBackend(t)) })
}

// etcdBackend is the test binary's shared etcd (a separate process).
func etcdBackend(t testing.TB) backend {
	eps := testenv.Etcd(t)
	hostport := strings.TrimPrefix(strings.TrimPrefix(eps[0], "http://"), "https://")
	return backend{
		name: "etcd",
		args: []string{"--backend", "etcd", "--etcd-endpoints", strings.Join(eps, ",")},
		addr: hostport,
		viaProxy: func(addr string) []string {
			return []string{"--backend", "etcd", "--etcd-endpoints", "http://" + addr}
		},
	}
}

// postgresBackend is a fresh database on the test binary's PostgreSQL 15.
func postgresBackend(t testing.TB) backend {
	u := testenv.NewDatabase(t)
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return backend{
		name: "postgres",
		args: []string{"--backend", "postgres", "--postgres-url", u},
		addr: pu.Host,
		viaProxy: func(addr string) []string {
			p := *pu
			p.Host = addr
			return []string{"--backend", "postgres", "--postgres-url", p.String()}
		},
		pgURL: u,
	}
}

// cluster is one test's regent replicas, sharing an observer file.
type cluster struct {
	t       testing.TB
	be      backend
	name    string
	regent  string
	worker  string
	dir     string
	outFile string
}

func newCluster(t testing.TB, be backend) *cluster {
	regent, worker := binaries(t)
	dir := t.TempDir()
	name := fmt.Sprintf("it-%d", time.Now().UnixNano())
	return &cluster{t: t, be: be, name: name, regent: regent, worker: worker, dir: dir, outFile: filepath.Join(dir, "observer.log")}
}

// replica is one `regent run` process.
type replica struct {
	t        testing.TB
	node     string
	cmd      *exec.Cmd
	log      *syncBuffer
	httpAddr string
	done     chan struct{}
	exitErr  error
}

type replicaOpts struct {
	node       string
	queues     []string
	maxRSS     int
	backend    []string // overrides the cluster's backend args
	extra      []string
	workerArgs []string
	// command, when set, replaces the whole worker command line (the
	// test worker with its -out, -interval and workerArgs).
	command []string
	env     []string
	// ttl overrides the test lease TTL (renewal TTL/5, margin TTL/10).
	ttl time.Duration
	// config, when set, is written to a YAML file passed with --config,
	// and queues are not passed as flags (the file lists them).
	config string
	// clusterInFile: the cluster is set by the config file
	// ("cluster: <name>" is prepended to config), not by --cluster.
	clusterInFile bool
	// defaultHTTP: no --http-addr (the default, or a free port when it is
	// taken); the replica's httpAddr is then unknown until read from its
	// member record (replica.httpAddr is empty).
	defaultHTTP bool
}

// home is node's HOME and working directory (its workers' too).
func (c *cluster) home(node string) string { return filepath.Join(c.dir, "home-"+node) }

// start runs a replica with its own HOME and pid file.
func (c *cluster) start(o replicaOpts) *replica {
	t := c.t
	t.Helper()
	if len(o.queues) == 0 && o.config == "" {
		o.queues = []string{"q"}
	}
	home := c.home(o.node)
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	httpAddr := "127.0.0.1:" + strconv.Itoa(port)
	ttl, renew, margin := testTTL, testRenew, testMargin
	if o.ttl != 0 {
		ttl, renew, margin = o.ttl, o.ttl/5, max(o.ttl/10, 200*time.Millisecond)
	}
	args := []string{"run", "--node-id", o.node,
		"--lease-ttl", ttl.String(), "--renew-interval", renew.String(),
		"--fence-margin", margin.String(), "--retry-interval", testRetry.String(),
		"--stop-timeout", "1s", "--pid-file", filepath.Join(home, "regent.pid"),
		"--log-level", "debug"}
	if o.clusterInFile {
		o.config = "cluster: " + c.name + "\n" + o.config
	} else {
		args = append(args, "--cluster", c.name)
	}
	if o.defaultHTTP {
		httpAddr = ""
	} else {
		args = append(args, "--http-addr", httpAddr)
	}
	if o.backend != nil {
		args = append(args, o.backend...)
	} else {
		args = append(args, c.be.args...)
	}
	if o.config != "" {
		file := filepath.Join(home, "regent.yaml")
		if err := os.WriteFile(file, []byte(o.config), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config", file)
	} else {
		for _, q := range o.queues {
			args = append(args, "--queue", q)
		}
	}
	if o.maxRSS > 0 {
		args = append(args, "--max-rss", strconv.Itoa(o.maxRSS))
	}
	args = append(args, o.extra...)
	if o.command != nil {
		args = append(args, "--")
		args = append(args, o.command...)
	} else {
		args = append(args, "--", c.worker, "-out", c.outFile, "-interval", workerTick.String())
		args = append(args, o.workerArgs...)
	}
	cmd := exec.Command(c.regent, args...)
	cmd.Env = append(os.Environ(), "HOME="+home)
	cmd.Env = append(cmd.Env, o.env...)
	cmd.Dir = home
	r := &replica{t: t, node: o.node, cmd: cmd, log: &syncBuffer{}, httpAddr: httpAddr, done: make(chan struct{})}
	cmd.Stdout = r.log
	cmd.Stderr = r.log
	if dir := os.Getenv("REGENT_TEST_LOG_DIR"); dir != "" {
		// Opt-in copy of every replica's log, for diagnosing long runs
		// (benchmarks) whose logs are too large to print.
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%s-%d.log", c.name, o.node, time.Now().UnixNano())))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = f.Close() })
		w := io.MultiWriter(r.log, f)
		cmd.Stdout, cmd.Stderr = w, w
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r.exitErr = cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		r.kill()
		if t.Failed() {
			t.Logf("%sreplica %s ---\n%s", testenv.LogDumpMarker, r.node, r.log.String())
		}
	})
	return r
}

// kill sends SIGKILL (after SIGCONT, in case it was stopped) and waits.
func (r *replica) kill() {
	_ = r.cmd.Process.Signal(syscall.SIGCONT)
	_ = r.cmd.Process.Kill()
	<-r.done
}

func (r *replica) signal(sig syscall.Signal) {
	r.t.Helper()
	if err := r.cmd.Process.Signal(sig); err != nil {
		r.t.Fatalf("signal %s to %s: %v", sig, r.node, err)
	}
}

// wait waits for the replica to exit and returns its exit code.
func (r *replica) wait(d time.Duration) int {
	r.t.Helper()
	select {
	case <-r.done:
	case <-time.After(d):
		r.t.Fatalf("replica %s did not exit within %s", r.node, d)
	}
	if r.exitErr == nil {
		return 0
	}
	if ee, ok := r.exitErr.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	r.t.Fatalf("replica %s: %v", r.node, r.exitErr)
	return -1
}

func (r *replica) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// leads asks the replica's /leader endpoint.
func (r *replica) leads(queue string) bool {
	client := http.Client{Timeout: time.Second}
	resp, err := client.Get("http://" + r.httpAddr + "/leader?queue=" + url.QueryEscape(queue))
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == 200
}

// eventually polls cond until it is true or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	took, ok := poll(d, 20*time.Millisecond, cond)
	if !ok {
		t.Fatalf("timed out after %s waiting for %s", d, what)
	}
	return took
}

// poll checks cond every interval until it is true (true) or d passes
// (false), and returns how long it took.
func poll(d, interval time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > d {
			return time.Since(start), false
		}
		time.Sleep(interval)
	}
}

// parseCounts parses a comma-separated list of positive counts given to
// flag name.
func parseCounts(tb testing.TB, name, list string) []int {
	tb.Helper()
	var out []int
	for _, s := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			tb.Fatalf("-%s: bad count %q", name, s)
		}
		out = append(out, n)
	}
	return out
}

// lines parses the observer file.
func (c *cluster) lines() []observer.Line {
	ls, _, err := observer.ParseFile(c.outFile)
	if err != nil {
		c.t.Fatal(err)
	}
	return ls
}

// check runs the overlap checker and fails the test on any overlap.
func (c *cluster) check() *observer.Report {
	c.t.Helper()
	r := observer.Check(c.lines(), overlapTol)
	c.t.Logf("observer: %s", r)
	if !r.OK() {
		c.t.Fatalf("safety violated:\n%s", r)
	}
	return r
}

// runningNodes returns the nodes whose workers wrote a line in the last
// window.
func (c *cluster) runningNodes(queue string, window time.Duration) map[string]int64 {
	out := map[string]int64{}
	cut := time.Now().Add(-window)
	for _, l := range c.lines() {
		if l.Queue == queue && l.At.After(cut) {
			out[l.Node] = l.Term
		}
	}
	return out
}

// waitLeaderRunning waits until exactly one node's workers write lines
// for queue, and returns it.
func (c *cluster) waitLeaderRunning(queue string, d time.Duration) (string, int64) {
	c.t.Helper()
	var node string
	var term int64
	eventually(c.t, d, "one node running workers of "+queue, func() bool {
		nodes := c.runningNodes(queue, 100*time.Millisecond)
		if len(nodes) != 1 {
			return false
		}
		for n, tm := range nodes {
			node, term = n, tm
		}
		return true
	})
	return node, term
}

// oneShot is the result of a one-shot regent command.
type oneShot struct {
	stdout, stderr string
	code           int
}

// runWith runs one regent command with env added to the environment (the
// password goes there, never on the command line).
func (c *cluster) runWith(env []string, args ...string) oneShot {
	c.t.Helper()
	cmd := exec.Command(c.regent, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	ctx, cancel := context.WithTimeout(context.Background(), hangTimeout)
	defer cancel()
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() { <-ctx.Done(); _ = cmd.Process.Kill() }()
	err := cmd.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return oneShot{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// regentCmd runs a one-shot regent command (status, step-down) and
// returns its stdout, stderr and exit code.
func (c *cluster) regentCmd(args ...string) (string, string, int) {
	c.t.Helper()
	full := append([]string{}, args...)
	full = append(full, "--cluster", c.name)
	full = append(full, c.be.args...)
	r := c.runWith(nil, full...)
	return r.stdout, r.stderr, r.code
}

// status returns the decoded `status --json` document.
func (c *cluster) status() map[string]any {
	c.t.Helper()
	out, errOut, code := c.regentCmd("status", "--json")
	if code != 0 {
		c.t.Fatalf("status --json exit %d: %s", code, errOut)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		c.t.Fatalf("status --json: %v\n%s", err, out)
	}
	return doc
}

// proxy starts a fault proxy in front of the backend.
func (c *cluster) proxy() *faultproxy.Proxy {
	c.t.Helper()
	p, err := faultproxy.Start(c.be.addr)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(p.Close)
	return p
}

// workerPIDsAlive lists live test worker processes of node.
func (c *cluster) workerPIDsAlive(node string) []int {
	var pids []int
	for _, w := range c.liveWorkers() {
		if w.node == node {
			pids = append(pids, w.pid)
		}
	}
	return pids
}

// liveWorker is one running test worker process of the cluster.
type liveWorker struct {
	pid   int
	node  string
	queue string
	term  int64
}

// liveWorkers lists the test worker processes (not zombies) whose
// environment names this cluster.
func (c *cluster) liveWorkers() []liveWorker {
	var out []liveWorker
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil || exe != c.worker {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && len(stat) > i+2 && stat[i+2] == 'Z' {
			continue
		}
		env, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		vars := map[string]string{}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if k, v, ok := strings.Cut(string(kv), "="); ok && strings.HasPrefix(k, "REGENT_") {
				vars[k] = v
			}
		}
		if vars["REGENT_CLUSTER"] != c.name {
			continue
		}
		term, _ := strconv.ParseInt(vars["REGENT_TERM"], 10, 64)
		out = append(out, liveWorker{pid: pid, node: vars["REGENT_NODE"], queue: vars["REGENT_QUEUE"], term: term})
	}
	return out
}

// syncBuffer is a goroutine-safe log buffer.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// contains reports whether the log has a line containing every part.
func (b *syncBuffer) contains(parts ...string) bool {
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		ok := true
		for _, p := range parts {
			if !strings.Contains(sc.Text(), p) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// followers returns the follower nodes of queue in `status --json`.
func (c *cluster) followers(queue string) []string {
	doc := c.status()
	var out []string
	qs, _ := doc["queues"].([]any)
	for _, q := range qs {
		qm, _ := q.(map[string]any)
		if qm["queue"] != queue {
			continue
		}
		fs, _ := qm["followers"].([]any)
		for _, f := range fs {
			fm, _ := f.(map[string]any)
			if n, ok := fm["node"].(string); ok {
				out = append(out, n)
			}
		}
	}
	return out
}

// waitFollower waits until node is listed as a follower of queue.
func (c *cluster) waitFollower(queue, node string) {
	c.t.Helper()
	eventually(c.t, hangTimeout, node+" follows "+queue, func() bool {
		for _, n := range c.followers(queue) {
			if n == node {
				return true
			}
		}
		return false
	})
}
