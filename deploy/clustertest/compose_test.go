//go:build clustertest

package clustertest

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/regentd/regent/integration/observer"
)

// Names fixed by docker-compose.yml.
const (
	regentPort  = "9464/tcp"
	observerLog = "/var/lib/regent/workers.log"
)

var replicas = []string{"regent-1", "regent-2", "regent-3"}

// cluster is one compose project of the local cluster, owned by one test.
type cluster struct {
	t       *testing.T
	backend string
	project string
	compose []string // "docker compose" or "docker-compose"
	file    string
	env     []string
	http    *http.Client

	ids   map[string]string // service -> container id
	ports map[string]string // replica -> 127.0.0.1:port of its HTTP server
	down  map[string]bool   // replicas killed (not reachable by design)
}

// composeCommand returns the compose CLI to use: $CLUSTERTEST_COMPOSE, else
// the docker compose plugin when present, else docker-compose.
func composeCommand() []string {
	if c := strings.Fields(os.Getenv("CLUSTERTEST_COMPOSE")); len(c) > 0 {
		return c
	}
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	return []string{"docker-compose"}
}

// repoRoot is the repository root (this file is deploy/clustertest/...).
func repoRoot(t *testing.T) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the repository")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// newCluster describes (does not start) the project of backend.
func newCluster(t *testing.T, backend string, ttl time.Duration) *cluster {
	t.Helper()
	for _, v := range []string{"REGENT_IMAGE", "ETCD_IMAGE", "POSTGRES_IMAGE"} {
		if os.Getenv(v) == "" {
			t.Fatalf("%s is not set: run the test through `make cluster-test` (deploy/cluster.sh test), which builds the images", v)
		}
	}
	prefix := os.Getenv("CLUSTERTEST_PROJECT")
	if prefix == "" {
		prefix = fmt.Sprintf("regent-ct-%d", os.Getpid())
	}
	c := &cluster{
		t:       t,
		backend: backend,
		project: prefix + "-" + backend,
		compose: composeCommand(),
		file:    filepath.Join(repoRoot(t), "docker-compose.yml"),
		http:    &http.Client{Timeout: 2 * time.Second},
		ids:     map[string]string{},
		ports:   map[string]string{},
		down:    map[string]bool{},
	}
	c.env = append(os.Environ(),
		"COMPOSE_PROFILES="+backend,
		"REGENT_BACKEND="+backend,
		"REGENT_CLUSTER=clustertest",
		"REGENT_LEASE_TTL="+ttl.String(),
		"REGENT_LOG_LEVEL=info",
		// Published on loopback only, at ports the engine picks: runs of
		// the test never collide with each other or with a user's cluster.
		"REGENT_HTTP_BIND=127.0.0.1",
		"REGENT_1_HTTP_PORT=", "REGENT_2_HTTP_PORT=", "REGENT_3_HTTP_PORT=",
	)
	return c
}

// cmd runs name args (bounded by d) and returns its combined output.
func (c *cluster) cmd(d time.Duration, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	x := exec.CommandContext(ctx, name, args...)
	x.Env = env
	var out bytes.Buffer
	x.Stdout, x.Stderr = &out, &out
	err := x.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// composeRun runs a compose subcommand on the project.
func (c *cluster) composeRun(d time.Duration, env []string, args ...string) (string, error) {
	full := append(append([]string{}, c.compose[1:]...), "-f", c.file, "-p", c.project)
	return c.cmd(d, env, c.compose[0], append(full, args...)...)
}

// docker runs a docker subcommand.
func (c *cluster) docker(d time.Duration, args ...string) (string, error) {
	return c.cmd(d, os.Environ(), "docker", args...)
}

// up starts the project and waits until every replica is healthy. The
// project is torn down when the test ends, whatever happens.
func (c *cluster) up() {
	t := c.t
	t.Helper()
	t.Cleanup(c.teardown)
	start := time.Now()
	if _, err := c.composeRun(5*time.Minute, c.env, "up", "-d"); err != nil {
		t.Fatalf("compose up: %v", err)
	}
	for _, s := range replicas {
		out, err := c.composeRun(time.Minute, c.env, "ps", "-q", s)
		id := strings.TrimSpace(out)
		if err != nil || id == "" {
			t.Fatalf("container of %s: %v %q", s, err, out)
		}
		c.ids[s] = id
	}
	for _, s := range replicas {
		c.waitHealthy(s, 2*time.Minute)
		c.refreshPort(s)
	}
	t.Logf("%s: %s up, three replicas healthy in %s", c.backend, c.project, time.Since(start).Round(time.Millisecond))
}

// waitHealthy waits until docker reports the replica's healthcheck
// (GET /healthz inside the container) healthy.
func (c *cluster) waitHealthy(s string, d time.Duration) {
	c.t.Helper()
	var last string
	ok := poll(d, func() bool {
		out, err := c.docker(10*time.Second, "inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", c.ids[s])
		last = strings.TrimSpace(out)
		return err == nil && last == "running healthy"
	})
	if !ok {
		c.t.Fatalf("%s not healthy within %s (last: %q)", s, d, last)
	}
}

// refreshPort reads the host port published for the replica's HTTP server
// (a restarted container gets a new one).
func (c *cluster) refreshPort(s string) {
	c.t.Helper()
	out, err := c.docker(10*time.Second, "port", c.ids[s], regentPort)
	if err != nil {
		c.t.Fatalf("published port of %s: %v", s, err)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(line, "127.0.0.1:") {
			c.ports[s] = strings.TrimSpace(line)
			return
		}
	}
	c.t.Fatalf("%s publishes %s on no loopback port: %q", s, regentPort, out)
}

// teardown removes the project with its networks and volumes, and fails
// the test if anything of it remains.
func (c *cluster) teardown() {
	t := c.t
	if t.Failed() {
		if out, err := c.composeRun(time.Minute, c.env, "logs", "--no-color", "--tail=300"); err == nil {
			t.Logf("logs of %s:\n%s", c.project, out)
		}
	}
	// Both profiles, so that every service of the file is taken down.
	env := append(append([]string{}, c.env...), "COMPOSE_PROFILES=etcd,postgres")
	if out, err := c.composeRun(3*time.Minute, env, "down", "-v", "--remove-orphans", "-t", "10"); err != nil {
		t.Errorf("compose down: %v\n%s", err, out)
	}
	label := "label=com.docker.compose.project=" + c.project
	for _, kind := range [][]string{
		{"ps", "-aq", "--filter", label},
		{"network", "ls", "-q", "--filter", label},
		{"volume", "ls", "-q", "--filter", label},
	} {
		out, err := c.docker(time.Minute, kind...)
		if err != nil {
			t.Errorf("docker %s: %v", strings.Join(kind, " "), err)
			continue
		}
		if left := strings.Fields(out); len(left) > 0 {
			t.Errorf("%s left behind by compose down: %s %v", c.project, kind[0], left)
		}
	}
}

// get GETs path on replica s: the status code, or an error when the replica
// cannot be reached.
func (c *cluster) get(s, path string) (int, []byte, error) {
	resp, err := c.http.Get("http://" + c.ports[s] + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body, err
}

// leads reports whether replica s answers 200 to /leader?queue=q.
func (c *cluster) leads(s, q string) bool {
	code, _, err := c.get(s, "/leader?queue="+q)
	return err == nil && code == http.StatusOK
}

// statusDoc is the part of /status (regent status --json) the test reads.
type statusDoc struct {
	Queues []struct {
		Queue  string `json:"queue"`
		Leader *struct {
			Node string `json:"node"`
			Term int64  `json:"term"`
		} `json:"leader"`
		Followers []struct {
			Node string `json:"node"`
		} `json:"followers"`
		Problems []struct {
			Severity string `json:"severity"`
			Message  string `json:"message"`
		} `json:"problems"`
	} `json:"queues"`
}

// status reads /status from replica s.
func (c *cluster) status(s string) (*statusDoc, error) {
	code, body, err := c.get(s, "/status")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/status on %s: %d %s", s, code, bytes.TrimSpace(body))
	}
	var doc statusDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("/status on %s: %w", s, err)
	}
	return &doc, nil
}

// live returns the replicas not killed by the test.
func (c *cluster) live() []string {
	var out []string
	for _, s := range replicas {
		if !c.down[s] {
			out = append(out, s)
		}
	}
	return out
}

// leaders waits until every queue has exactly one live replica answering
// 200 on /leader, the same in two rounds in a row, and /status of that
// replica names it with a term; it returns queue -> (replica, term).
func (c *cluster) leaders(queues []string, d time.Duration) map[string]leader {
	c.t.Helper()
	var prev, cur map[string]leader
	var why string
	ok := poll(d, func() bool {
		prev, cur = cur, map[string]leader{}
		for _, q := range queues {
			var who []string
			for _, s := range c.live() {
				if c.leads(s, q) {
					who = append(who, s)
				}
			}
			if len(who) != 1 {
				why = fmt.Sprintf("queue %s led by %v", q, who)
				return false
			}
			cur[q] = leader{replica: who[0]}
		}
		for q, l := range cur {
			doc, err := c.status(l.replica)
			if err != nil {
				why = err.Error()
				return false
			}
			for _, qs := range doc.Queues {
				if qs.Queue == q && qs.Leader != nil && qs.Leader.Node == l.replica {
					l.term = qs.Leader.Term
				}
			}
			if l.term == 0 {
				why = fmt.Sprintf("/status of %s does not name it leader of %s", l.replica, q)
				return false
			}
			cur[q] = l
		}
		return sameLeaders(prev, cur)
	})
	if !ok {
		c.t.Fatalf("no single leader per queue within %s: %s", d, why)
	}
	return cur
}

// leader is a queue's leading replica and its term.
type leader struct {
	replica string
	term    int64
}

func sameLeaders(a, b map[string]leader) bool {
	if a == nil || len(a) != len(b) {
		return false
	}
	for q, l := range a {
		if b[q] != l {
			return false
		}
	}
	return true
}

// waitRejoined waits until replica s, back after a fault, is healthy and
// stands by as a follower of at least one queue in its own /status, and
// checks that it leads no queue under a term it held before the fault
// (held: queue -> its term then; a queue it leads later must have come to
// it by a new election, such as a balancing handover).
func (c *cluster) waitRejoined(s string, held map[string]int64, d time.Duration) {
	c.t.Helper()
	var why string
	ok := poll(d, func() bool {
		if code, _, err := c.get(s, "/healthz"); err != nil || code != http.StatusOK {
			why = fmt.Sprintf("/healthz: %d %v", code, err)
			return false
		}
		doc, err := c.status(s)
		if err != nil {
			why = err.Error()
			return false
		}
		follows := false
		for _, qs := range doc.Queues {
			if qs.Leader != nil && qs.Leader.Node == s && qs.Leader.Term <= held[qs.Queue] {
				c.t.Errorf("%s leads %s under term %d again after the fault (it held term %d)", s, qs.Queue, qs.Leader.Term, held[qs.Queue])
			}
			for _, f := range qs.Followers {
				follows = follows || f.Node == s
			}
		}
		if !follows {
			why = "not listed as a follower of any queue"
			return false
		}
		return true
	})
	if !ok {
		c.t.Fatalf("%s did not rejoin as a follower within %s: %s", s, d, why)
	}
}

// statusCheck waits until `regent status --check` run inside replica s
// exits 0, and returns its output.
func (c *cluster) statusCheck(s string, d time.Duration) string {
	c.t.Helper()
	var out string
	var err error
	ok := poll(d, func() bool {
		out, err = c.docker(30*time.Second, "exec", c.ids[s], "regent", "status", "--check")
		return err == nil
	})
	if !ok {
		c.t.Fatalf("regent status --check on %s did not exit 0 within %s: %v", s, d, err)
	}
	return strings.TrimSpace(out)
}

// readLog copies the observer log out of the shared volume (through any
// replica's container, running or not) and parses it.
func (c *cluster) readLog() []observer.Line {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	x := exec.CommandContext(ctx, "docker", "cp", c.ids[replicas[0]]+":"+observerLog, "-")
	var stderr bytes.Buffer
	x.Stderr = &stderr
	tarball, err := x.Output()
	if err != nil {
		c.t.Fatalf("docker cp of the observer log: %v %s", err, stderr.String())
	}
	tr := tar.NewReader(bytes.NewReader(tarball))
	if _, err := tr.Next(); err != nil {
		c.t.Fatalf("observer log: %v", err)
	}
	lines, _, err := ParseDemoLog(tr)
	if err != nil {
		c.t.Fatalf("observer log: %v", err)
	}
	return lines
}

// waitNewTerm waits until the observer log has a worker line of queue with
// a term above old, and returns the log and that first line.
func (c *cluster) waitNewTerm(queue string, old int64, d time.Duration) ([]observer.Line, observer.Line) {
	c.t.Helper()
	var lines []observer.Line
	var first observer.Line
	ok := poll(d, func() bool {
		lines = c.readLog()
		var found bool
		first, found = FirstAfter(lines, queue, old)
		return found
	})
	if !ok {
		c.t.Fatalf("no worker of %s with a term above %d within %s", queue, old, d)
	}
	return lines, first
}

// poll calls cond every 100 ms until it returns true (true) or d has passed
// (false).
func poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}
