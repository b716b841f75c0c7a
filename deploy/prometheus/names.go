// Package prometheus reads regent's Prometheus rules (*.rules.yml here)
// and Grafana dashboard (deploy/grafana/regent.json) for their tests: the
// PromQL expressions they run and the regent_* metric names those query.
// The rules' own behaviour is tested by promtool (make rules-test).
package prometheus

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// Coming are metric names the rules and the dashboard query that other
// parts of issue 16 add to regent now, each with where it comes from.
// TestQueriedMetricsExist reports them while they are missing, and asks
// for their removal from this list once regent registers them.
var Coming = map[string]string{}

// Conditional are metric names a replica exports only in some
// configurations, so a replica started without it has none of them.
var Conditional = map[string]string{
	"regent_fence_foreign_owner":         "fence.postgres_url",
	"regent_fence_stale_writes_rejected": "fence.postgres_url",
	"regent_fence_term":                  "fence.postgres_url",
	"regent_fence_readable":              "fence.postgres_url",
}

// Expr is one PromQL expression and where it is.
type Expr struct {
	File  string // path relative to the repository root
	Where string // the rule (record or alert name) or dashboard panel
	Query string
}

// Exprs returns every PromQL expression of the rule files in
// deploy/prometheus and of the dashboard, root being the repository root.
// Dashboard expressions keep Grafana's variables ($job, $__rate_interval).
func Exprs(root string) ([]Expr, error) {
	var out []Expr
	rules, err := filepath.Glob(filepath.Join(root, "deploy/prometheus/*.rules.yml"))
	if err != nil {
		return nil, err
	}
	if len(rules) == 0 {
		return nil, fmt.Errorf("no rule files in %s/deploy/prometheus", root)
	}
	for _, f := range rules {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var doc struct {
			Groups []struct {
				Rules []struct {
					Record, Alert, Expr string
				}
			}
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		rel, _ := filepath.Rel(root, f)
		for _, g := range doc.Groups {
			for _, r := range g.Rules {
				out = append(out, Expr{File: rel, Where: r.Record + r.Alert, Query: r.Expr})
			}
		}
	}
	dash := filepath.Join(root, "deploy/grafana/regent.json")
	b, err := os.ReadFile(dash)
	if err != nil {
		return nil, err
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", dash, err)
	}
	walkJSON(doc, "", func(where, expr string) {
		out = append(out, Expr{File: "deploy/grafana/regent.json", Where: where, Query: expr})
	})
	return out, nil
}

// walkJSON calls f with every "expr" of a Grafana dashboard (panel
// targets) and every templating "definition", naming the panel or
// variable it belongs to.
func walkJSON(v any, where string, f func(where, expr string)) {
	switch v := v.(type) {
	case map[string]any:
		if t, ok := v["title"].(string); ok {
			where = t
		} else if n, ok := v["name"].(string); ok {
			where = "variable " + n
		}
		for _, k := range []string{"expr", "definition"} {
			if s, ok := v[k].(string); ok && s != "" {
				f(where, s)
			}
		}
		for _, c := range v {
			walkJSON(c, where, f)
		}
	case []any:
		for _, c := range v {
			walkJSON(c, where, f)
		}
	}
}

var metricName = regexp.MustCompile(`\bregent_[a-z_]+`)

// Names returns the regent_* metric names the expressions query, each
// with the places that query it, histogram suffixes stripped.
func Names(exprs []Expr) map[string][]string {
	out := map[string][]string{}
	for _, e := range exprs {
		for _, n := range metricName.FindAllString(e.Query, -1) {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				n = strings.TrimSuffix(n, s)
			}
			out[n] = append(out[n], e.File+": "+e.Where)
		}
	}
	return out
}

// Sorted returns the keys of m in order.
func Sorted[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
