package prometheus

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const root = "../.."

// registered returns the metric names regent's Go code registers: the
// Name of every prometheus.*Opts outside tests.
func registered(t *testing.T) map[string]string {
	t.Helper()
	re := regexp.MustCompile(`Name:\s*"(regent_[a-z_]+)"`)
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllSubmatch(b, -1) {
			out[string(m[1])] = p
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 10 {
		t.Fatalf("found only %d registered metric names: %v", len(out), out)
	}
	return out
}

// Every regent_* metric the rules and the dashboard query is registered
// by regent's code, or listed in Coming (reported, not failed).
func TestQueriedMetricsExist(t *testing.T) {
	exprs, err := Exprs(root)
	if err != nil {
		t.Fatal(err)
	}
	reg := registered(t)
	names := Names(exprs)
	for _, n := range Sorted(names) {
		_, ok := reg[n]
		why, coming := Coming[n]
		switch {
		case ok && coming:
			t.Logf("%s is registered now (%s): remove it from Coming", n, reg[n])
		case ok:
		case coming:
			t.Logf("%s: not registered yet, coming with %s; queried by %s", n, why, strings.Join(names[n], ", "))
		default:
			t.Errorf("%s is not a metric regent registers; queried by %s", n, strings.Join(names[n], ", "))
		}
	}
	for _, n := range []string{"regent_is_leader", "regent_fence_foreign_owner", "regent_build_info"} {
		if _, ok := names[n]; !ok {
			t.Errorf("%s is queried by neither the rules nor the dashboard", n)
		}
	}
	for n := range Conditional {
		if _, ok := reg[n]; !ok {
			t.Errorf("Conditional lists %s, which regent does not register", n)
		}
	}
}

// The dashboard's queries are valid PromQL: promtool checks them as
// recording rules, Grafana's variables replaced.
func TestDashboardQueriesParse(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	exprs, err := Exprs(root)
	if err != nil {
		t.Fatal(err)
	}
	vars := strings.NewReplacer("$__rate_interval", "5m", "$job", ".+", "$queue", ".+")
	type rule struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var rules []rule
	for _, e := range exprs {
		if e.File != "deploy/grafana/regent.json" {
			continue
		}
		q := vars.Replace(e.Query)
		if strings.HasPrefix(q, "label_values(") {
			// A Grafana function: check its selector.
			q = strings.TrimSuffix(strings.TrimPrefix(q, "label_values("), ")")
			if i := strings.LastIndex(q, ","); i > 0 {
				q = q[:i]
			}
		}
		rules = append(rules, rule{Record: "dashboard:check", Expr: q})
	}
	if len(rules) < 10 {
		t.Fatalf("only %d dashboard queries", len(rules))
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "dashboard.rules.yml")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules (the dashboard's queries): %v\n%s", err, out)
	}
}

// Every alert has promtool tests of it firing and of it not firing.
func TestEveryAlertTested(t *testing.T) {
	exprs, err := Exprs(root)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("alerts.test.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string           `json:"alertname"`
				ExpAlerts []map[string]any `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range doc.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	n := 0
	for _, e := range exprs {
		if e.File != "deploy/prometheus/alerts.rules.yml" {
			continue
		}
		n++
		if !fires[e.Where] {
			t.Errorf("alert %s: no test of it firing in alerts.test.yml", e.Where)
		}
		if !quiet[e.Where] {
			t.Errorf("alert %s: no test of it not firing in alerts.test.yml", e.Where)
		}
	}
	if n == 0 {
		t.Fatal("no alerts found")
	}
}
