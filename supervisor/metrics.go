package supervisor

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the supervisor's Prometheus metrics. A nil *Metrics is
// valid and records nothing.
type Metrics struct {
	IsLeader        *prometheus.GaugeVec
	Term            *prometheus.GaugeVec
	LeaderChanges   *prometheus.CounterVec
	Workers         *prometheus.GaugeVec
	WorkerRestarts  *prometheus.CounterVec
	ConfigConflicts *prometheus.GaugeVec
	LeaseRemaining  *prometheus.GaugeVec
	BackendErrors   prometheus.Counter
	SplitBrain      *prometheus.GaugeVec
	StaleWorkers    *prometheus.GaugeVec
	Degraded        *prometheus.GaugeVec
	// Drained is 1 while this replica obeys a drain of its node.
	Drained prometheus.Gauge
	// ConfigGeneration is 1 for this replica's current config generation
	// of each queue (config.Published.Generation), as labels.
	ConfigGeneration *prometheus.GaugeVec
	// Paused is regent_paused{queue}: 1 while the queue is paused, on
	// every replica that has the queue.
	Paused *prometheus.GaugeVec
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		IsLeader: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "regent_is_leader", Help: "1 if this replica leads the queue, else 0."}, []string{"queue"}),
		Term: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "regent_term", Help: "Current term of the queue as known by this replica."}, []string{"queue"}),
		LeaderChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regent_leader_changes_total", Help: "Leadership changes of the queue seen by this replica."}, []string{"queue"}),
		Workers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "regent_workers", Help: "Worker processes this replica runs for the queue."}, []string{"queue"}),
		WorkerRestarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regent_worker_restarts_total", Help: "Worker restarts by reason (crash, exit, rss_watchdog, wedged)."}, []string{"queue", "reason"}),
		ConfigConflicts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "regent_config_conflicts", Help: "Fields where this replica's config differs from the leader's."}, []string{"queue"}),
		LeaseRemaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "regent_lease_remaining_seconds", Help: "Seconds until the leader's local deadline; 0 when not leader."}, []string{"queue"}),
		BackendErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regent_backend_errors_total", Help: "Failed backend operations."}),
		SplitBrain: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "regent_split_brain", Help: "1 if more than one member claims to lead the queue."}, []string{"queue"}),
		StaleWorkers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "regent_stale_workers", Help: "Members running workers of a term older than the queue's current term."}, []string{"queue"}),
		Degraded: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "regent_degraded", Help: "1 if the queue's leader reports its workers crash-looping."}, []string{"queue"}),
	}
	m.Paused = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "regent_paused", Help: "1 while the queue is paused (regent pause): its leader runs no worker."}, []string{"queue"})
	reg.MustRegister(m.Paused)
	reg.MustRegister(m.IsLeader, m.Term, m.LeaderChanges, m.Workers, m.WorkerRestarts,
		m.ConfigConflicts, m.LeaseRemaining, m.BackendErrors, m.SplitBrain, m.StaleWorkers, m.Degraded)
	m.Drained = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "regent_drained", Help: "1 while this replica obeys a drain of its node (regent drain)."})
	m.ConfigGeneration = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "regent_config_generation_info", Help: "1 for this replica's config generation of the queue (status config_generation)."},
		[]string{"queue", "generation"})
	reg.MustRegister(m.Drained, m.ConfigGeneration)
	return m
}

// SetConfigGeneration makes gen the queue's only config generation in
// regent_config_generation_info.
func (m *Metrics) SetConfigGeneration(queue, gen string) {
	if m == nil {
		return
	}
	m.ConfigGeneration.DeletePartialMatch(prometheus.Labels{"queue": queue})
	m.ConfigGeneration.WithLabelValues(queue, gen).Set(1)
}

func (m *Metrics) backendError() {
	if m != nil {
		m.BackendErrors.Inc()
	}
}

func (m *Metrics) setLeader(queue string, leader bool, term int64) {
	if m == nil {
		return
	}
	v := 0.0
	if leader {
		v = 1
	}
	m.IsLeader.WithLabelValues(queue).Set(v)
	if term > 0 {
		m.Term.WithLabelValues(queue).Set(float64(term))
	}
}

func (m *Metrics) initQueue(queue string) {
	if m == nil {
		return
	}
	m.IsLeader.WithLabelValues(queue).Set(0)
	m.Workers.WithLabelValues(queue).Set(0)
	m.ConfigConflicts.WithLabelValues(queue).Set(0)
	m.LeaseRemaining.WithLabelValues(queue).Set(0)
	m.LeaderChanges.WithLabelValues(queue)
	m.SplitBrain.WithLabelValues(queue).Set(0)
	m.StaleWorkers.WithLabelValues(queue).Set(0)
	m.Degraded.WithLabelValues(queue).Set(0)
	m.Paused.WithLabelValues(queue).Set(0)
}
