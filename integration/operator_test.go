package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// metric returns the value of the series name{labels} on r's /metrics,
// or -1 if absent.
func (r *replica) metric(name, labels string) float64 {
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + r.httpAddr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name+labels) + ` ([0-9.e+-]+)$`)
	m := re.FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

func (r *replica) get(path string) (int, []byte) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + r.httpAddr + path)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// /leader answers 200 on exactly the leader; metrics follow a failover;
// /status serves the status document; healthz is up.
func TestOperatorSurface(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		c := newCluster(t, be)
		a := c.start(replicaOpts{node: "a"})
		c.waitLeaderRunning("q", hangTimeout)
		b := c.start(replicaOpts{node: "b"})
		c.waitFollower("q", "b")

		if !a.leads("q") || b.leads("q") {
			t.Fatalf("/leader: a=%v b=%v, want exactly a", a.leads("q"), b.leads("q"))
		}
		if code, _ := a.get("/leader"); code != 400 {
			t.Errorf("/leader without queue: %d, want 400", code)
		}
		for _, r := range []*replica{a, b} {
			if code, _ := r.get("/healthz"); code != 200 {
				t.Errorf("%s /healthz %d", r.node, code)
			}
			if code, _ := r.get("/readyz"); code != 200 {
				t.Errorf("%s /readyz %d", r.node, code)
			}
		}
		q := `{queue="q"}`
		if v := a.metric("regent_is_leader", q); v != 1 {
			t.Errorf("a regent_is_leader = %v, want 1", v)
		}
		if v := b.metric("regent_is_leader", q); v != 0 {
			t.Errorf("b regent_is_leader = %v, want 0", v)
		}
		if v := a.metric("regent_workers", q); v != 1 {
			t.Errorf("a regent_workers = %v, want 1", v)
		}
		if v := a.metric("regent_lease_remaining_seconds", q); v <= 0 {
			t.Errorf("a regent_lease_remaining_seconds = %v, want > 0", v)
		}
		for _, name := range []string{"regent_term", "regent_leader_changes_total", "regent_config_conflicts"} {
			if v := a.metric(name, q); v < 0 {
				t.Errorf("metric %s missing", name)
			}
		}
		if v := a.metric("regent_backend_errors_total", ""); v < 0 {
			t.Error("regent_backend_errors_total missing")
		}
		termA := a.metric("regent_term", q)

		// /status is the same document as status --json.
		code, body := a.get("/status")
		if code != 200 {
			t.Fatalf("/status %d: %s", code, body)
		}
		var doc statusDocT
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatalf("/status: %v\n%s", err, body)
		}
		if len(doc.Queues) != 1 || doc.Queues[0].Leader == nil || doc.Queues[0].Leader.Node != "a" {
			t.Fatalf("/status: %s", body)
		}

		changesB := b.metric("regent_leader_changes_total", q)
		a.kill()
		eventually(t, hangTimeout, "b leads and its metrics say so", func() bool {
			return b.leads("q") && b.metric("regent_is_leader", q) == 1
		})
		if v := b.metric("regent_term", q); v <= termA {
			t.Errorf("b regent_term = %v, want > %v", v, termA)
		}
		if v := b.metric("regent_leader_changes_total", q); v <= changesB {
			t.Errorf("b regent_leader_changes_total = %v, want > %v", v, changesB)
		}
		c.check()
	})
}

// statusDocT mirrors the documented `status --json` document.
type statusDocT struct {
	Cluster string `json:"cluster"`
	Queues  []struct {
		Queue  string `json:"queue"`
		Leader *struct {
			Node    string    `json:"node"`
			Host    string    `json:"host"`
			PID     int       `json:"pid"`
			Term    int64     `json:"term"`
			Since   time.Time `json:"since"`
			Version string    `json:"version"`
			Config  struct {
				Command     []string `json:"command"`
				Concurrency int      `json:"concurrency"`
				MaxRSSMB    int      `json:"max_rss_mb"`
				LeaseTTL    string   `json:"lease_ttl"`
				StopTimeout string   `json:"stop_timeout"`
			} `json:"config"`
			Workers []struct {
				Index    int    `json:"index"`
				PID      int    `json:"pid"`
				State    string `json:"state"`
				Restarts int    `json:"restarts"`
			} `json:"workers"`
		} `json:"leader"`
		Followers []struct {
			Node      string    `json:"node"`
			Host      string    `json:"host"`
			LastSeen  time.Time `json:"last_seen"`
			Conflicts []struct {
				Field    string `json:"field"`
				Leader   string `json:"leader"`
				Follower string `json:"follower"`
			} `json:"conflicts"`
		} `json:"followers"`
		Problems []struct {
			Severity string `json:"severity"`
			Code     string `json:"code"`
			Message  string `json:"message"`
		} `json:"problems"`
	} `json:"queues"`
}

// Every --check exit code from a real situation, and the --json fields.
func TestStatusCheckCodes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		c := newCluster(t, be)
		a := c.start(replicaOpts{node: "a", maxRSS: 16384, ttl: 10 * time.Second})
		c.waitLeaderRunning("q", hangTimeout)
		b := c.start(replicaOpts{node: "b", maxRSS: 16384, ttl: 10 * time.Second})
		c.waitFollower("q", "b")
		eventually(t, hangTimeout, "status --check OK", func() bool {
			out, _, code := c.regentCmd("status", "--check")
			return code == 0 && strings.HasPrefix(out, "REGENT OK")
		})

		// The documented JSON fields, from the real document.
		out, _, code := c.regentCmd("status", "--json")
		if code != 0 {
			t.Fatalf("status --json exit %d", code)
		}
		var doc statusDocT
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Cluster != c.name || len(doc.Queues) != 1 {
			t.Fatalf("status --json: %s", out)
		}
		q := doc.Queues[0]
		l := q.Leader
		if q.Queue != "q" || l == nil || l.Node != "a" || l.Host == "" || l.PID == 0 || l.Term <= 0 || l.Since.IsZero() || l.Version == "" {
			t.Fatalf("leader fields: %s", out)
		}
		if l.Config.MaxRSSMB != 16384 || l.Config.Concurrency != 1 || l.Config.LeaseTTL != "10s" || l.Config.StopTimeout != "1s" || len(l.Config.Command) == 0 {
			t.Errorf("leader config: %+v", l.Config)
		}
		eventually(t, hangTimeout, "workers in status", func() bool {
			out, _, _ := c.regentCmd("status", "--json")
			var d statusDocT
			_ = json.Unmarshal([]byte(out), &d)
			return len(d.Queues) == 1 && d.Queues[0].Leader != nil && len(d.Queues[0].Leader.Workers) == 1 &&
				d.Queues[0].Leader.Workers[0].PID > 0 && d.Queues[0].Leader.Workers[0].State == "running"
		})
		if len(q.Followers) != 1 || q.Followers[0].Node != "b" || q.Followers[0].LastSeen.IsZero() {
			t.Errorf("followers: %s", out)
		}

		// WARNING: a follower with another --max-rss.
		g := c.start(replicaOpts{node: "ghost", maxRSS: 4096, ttl: 10 * time.Second})
		eventually(t, hangTimeout, "status --check WARNING with the conflict", func() bool {
			out, _, code := c.regentCmd("status", "--check")
			return code == 1 && strings.Contains(out, "config_conflict") && strings.Contains(out, "max_rss_mb leader=16384 follower=4096")
		})
		g.signal(syscall.SIGTERM)
		g.wait(hangTimeout)

		// CRITICAL: the leader SIGKILLed and not yet replaced (the only
		// follower is frozen, its member record not yet expired).
		b.signal(syscall.SIGSTOP)
		a.kill()
		eventually(t, 9*time.Second, "status --check CRITICAL no_leader", func() bool {
			out, _, code := c.regentCmd("status", "--check")
			return code == 2 && strings.Contains(out, "no_leader")
		})
		b.signal(syscall.SIGCONT)
		eventually(t, hangTimeout, "b takes over and status is OK again", func() bool {
			out, _, code := c.regentCmd("status", "--check")
			return code == 0 && strings.HasPrefix(out, "REGENT OK")
		})
		c.check()
	})
}
