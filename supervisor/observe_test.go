package supervisor

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/supervisor/diagnosis"
)

// The observer's metrics and log reports come from the diagnosis of the
// records, with the leader's grace (its published 10s + 1s), not this
// replica's own lease TTL (1s): what status shows of the same records.
func TestObserverReportsTheDiagnosis(t *testing.T) {
	var m *Metrics
	h := startHarnessWith(t, false, func(c *Config) { m = NewMetrics(prometheus.NewRegistry()); c.Metrics = m })
	leaderCfg := queueCfg("q", 4096).Publish(10 * time.Second) // differs from ours in lease_ttl only
	setRecords := func(ago time.Duration) {
		since := time.Now().Add(-ago)
		payload, _ := json.Marshal(diagnosis.LeaderPayload{Version: "x", Config: leaderCfg})
		old, _ := json.Marshal(diagnosis.MemberPayload{Queues: map[string]diagnosis.MemberQueue{
			"q": {Role: election.RoleLeader, Term: 5, Since: since.Add(-time.Hour), Config: leaderCfg, WorkerTerms: []int64{5}}}})
		cur, _ := json.Marshal(diagnosis.MemberPayload{Queues: map[string]diagnosis.MemberQueue{
			"q": {Role: election.RoleLeader, Term: 6, Since: since, Config: leaderCfg, WorkerTerms: []int64{6}, Degraded: true}}})
		h.fb.mu.Lock()
		h.fb.leaders["q"] = election.LeaderRecord{Queue: "q", Node: "other", Term: 6, ElectedAt: since, Payload: payload}
		h.fb.members["old"] = election.MemberRecord{Node: "old", Payload: old}
		h.fb.members["other"] = election.MemberRecord{Node: "other", Payload: cur}
		h.fb.mu.Unlock()
		h.fb.wake()
	}
	gauges := func() [4]float64 {
		var out [4]float64
		for i, g := range []*prometheus.GaugeVec{m.ConfigConflicts, m.SplitBrain, m.StaleWorkers, m.Degraded} {
			var pm dto.Metric
			if err := g.WithLabelValues("q").Write(&pm); err != nil {
				t.Fatal(err)
			}
			out[i] = pm.GetGauge().GetValue()
		}
		return out
	}

	// 5s into the new term: past our own TTL + 1s, within the leader's.
	setRecords(5 * time.Second)
	waitFor(t, "conflict and degraded, no split brain or stale worker", func() bool {
		return gauges() == [4]float64{1, 0, 0, 1}
	})
	if out := h.logBuf.String(); strings.Contains(out, "split_brain") || strings.Contains(out, "stale_worker") {
		t.Fatalf("reported within the leader's grace:\n%s", out)
	}

	// 12s into it: past the leader's grace too.
	setRecords(12 * time.Second)
	waitFor(t, "split brain and a stale worker", func() bool {
		return gauges() == [4]float64{1, 1, 1, 1}
	})
	waitFor(t, "split_brain and stale_worker logged", func() bool {
		out := h.logBuf.String()
		return strings.Contains(out, "split_brain") && strings.Contains(out, "claimants=\"old (term 5), other (term 6)\"") &&
			strings.Contains(out, "stale_worker") && strings.Contains(out, "worker_term=5")
	})
}
