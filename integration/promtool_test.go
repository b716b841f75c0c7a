package integration

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/regentd/regent/deploy/prometheus"
)

// A live leader's /metrics, after one worker crash, passes Prometheus's own linter (promtool check
// metrics: names, units, HELP, counters' _total, label names), and carries
// every regent_* metric the alert rules and the Grafana dashboard query,
// except those exported only with a fence configured and those listed as
// coming (deploy/prometheus/names.go); regent_build_info among them.
func TestPromtoolMetricsAndDashboard(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	c := newCluster(t, etcdBackend(t))
	a := c.start(replicaOpts{node: "a"})
	c.waitLeaderRunning("q", hangTimeout)

	// A worker crash, so that regent_worker_restarts_total has a series
	// (a counter vector shows nothing before its first restart).
	code, body := a.get("/status")
	var doc statusDocT
	if err := json.Unmarshal(body, &doc); code != 200 || err != nil || len(doc.Queues) != 1 || doc.Queues[0].Leader == nil ||
		len(doc.Queues[0].Leader.Workers) == 0 || doc.Queues[0].Leader.Workers[0].PID <= 0 {
		t.Fatalf("/status %d %v: %s", code, err, body)
	}
	if err := syscall.Kill(doc.Queues[0].Leader.Workers[0].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, hangTimeout, "the crash counted and the worker restarted", func() bool {
		return a.metric("regent_worker_restarts_total", `{queue="q",reason="crash"}`) >= 1 && a.metric("regent_workers", `{queue="q"}`) == 1
	})

	code, body = a.get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	exported := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (\S+) `).FindAllSubmatch(body, -1) {
		exported[string(m[1])] = true
	}
	exprs, err := prometheus.Exprs("..")
	if err != nil {
		t.Fatal(err)
	}
	names := prometheus.Names(exprs)
	for _, n := range prometheus.Sorted(names) {
		switch {
		case exported[n]:
		case prometheus.Conditional[n] != "":
			t.Logf("%s: exported only with %s", n, prometheus.Conditional[n])
		case prometheus.Coming[n] != "":
			t.Logf("%s: not exported yet, coming with %s", n, prometheus.Coming[n])
		default:
			t.Errorf("%s is not in a live replica's /metrics; queried by %s", n, strings.Join(names[n], ", "))
		}
	}
	if !regexp.MustCompile(`(?m)^regent_build_info\{goversion="go[^"]+",revision="[^"]*",version="[^"]+"\} 1$`).Match(body) {
		t.Errorf("regent_build_info missing or malformed in /metrics")
	}
	c.check()
}
