package main

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/supervisor/diagnosis"
)

// fenceWatchEvery is how often a replica reads the fence of its queues.
const fenceWatchEvery = 10 * time.Second

// fenceMetrics are a replica's view of the fence at the resource.
type fenceMetrics struct {
	foreignOwner *prometheus.GaugeVec
	staleWrites  *prometheus.GaugeVec
	term         *prometheus.GaugeVec
	readable     prometheus.Gauge
}

func newFenceMetrics(reg prometheus.Registerer) *fenceMetrics {
	m := &fenceMetrics{
		foreignOwner: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "regent_fence_foreign_owner", Help: "1 if the resource's fence of the queue's key is owned by another deployment, or refused another deployment's claims in the last 10 minutes."}, []string{"queue"}),
		staleWrites: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "regent_fence_stale_writes_rejected", Help: "Claims of a stale term the resource refused for the queue's key in the last 10 minutes."}, []string{"queue"}),
		term: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "regent_fence_term", Help: "The term the resource's fence last accepted for the queue's key."}, []string{"queue"}),
		readable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "regent_fence_readable", Help: "1 if the last read of the fence at the resource succeeded."}),
	}
	reg.MustRegister(m.foreignOwner, m.staleWrites, m.term, m.readable)
	return m
}

// fenceWatch reads the fence of this replica's queues at the resource
// every fenceWatchEvery, keeps the metrics, and logs each fence problem
// when it appears and when it clears.
type fenceWatch struct {
	url     string
	queues  func() []config.QueueConfig // the current ones (a reload changes them)
	owner   func() string               // "" until the first backend session
	metrics *fenceMetrics
	log     hclog.Logger

	conn   *pgx.Conn         // owned by run
	logged map[string]string // queue -> last logged problems
}

func newFenceWatch(url string, queues func() []config.QueueConfig, owner func() string, reg prometheus.Registerer, log hclog.Logger) *fenceWatch {
	return &fenceWatch{url: url, queues: queues, owner: owner, metrics: newFenceMetrics(reg),
		log: log.Named("fence"), logged: map[string]string{}}
}

// run reads the fence until ctx ends.
func (w *fenceWatch) run(ctx context.Context) {
	defer func() {
		if w.conn != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
			_ = w.conn.Close(cctx)
		}
	}()
	tick := time.NewTicker(fenceWatchEvery)
	defer tick.Stop()
	for {
		if owner := w.owner(); owner != "" {
			w.once(ctx, owner)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// once reads the fence and updates the metrics and the log.
func (w *fenceWatch) once(ctx context.Context, owner string) {
	now := time.Now()
	queues := w.queues()
	keys := make([]string, len(queues))
	for i, q := range queues {
		keys[i] = q.EffectiveFenceKey()
	}
	view := diagnosis.FenceView{Owner: owner}
	if w.conn == nil || w.conn.IsClosed() {
		conn, err := connectFence(ctx, w.url)
		if err != nil {
			view.Err = err
		}
		w.conn = conn
	}
	if w.conn != nil {
		view = readFence(ctx, w.conn, owner, keys, now)
		if view.Err != nil {
			_ = w.conn.Close(ctx)
			w.conn = nil
		}
	}
	w.metrics.readable.Set(boolGauge(view.Err == nil))
	for i, q := range queues {
		r := diagnosis.Report{Queue: q.Name}
		r.AddFence(keys[i], view, now)
		w.metrics.foreignOwner.WithLabelValues(q.Name).Set(boolGauge(r.Has(diagnosis.CodeForeignOwner)))
		w.metrics.staleWrites.WithLabelValues(q.Name).Set(float64(r.StaleWritesRejected))
		if r.Fence != nil {
			w.metrics.term.WithLabelValues(q.Name).Set(float64(r.Fence.Term))
		}
		w.report(q.Name, r.Problems)
	}
}

// report logs the fence problems of queue when they differ from the last
// ones logged.
func (w *fenceWatch) report(queue string, problems []diagnosis.Problem) {
	key := ""
	for _, p := range problems {
		key += p.Code + ":" + p.Message + "\n"
	}
	if key == w.logged[queue] {
		return
	}
	w.logged[queue] = key
	if len(problems) == 0 {
		w.log.Info("fence_ok", "queue", queue)
		return
	}
	for _, p := range problems {
		if p.Severity == diagnosis.Critical {
			w.log.Error(p.Code, "queue", queue, "detail", p.Message)
		} else {
			w.log.Warn(p.Code, "queue", queue, "detail", p.Message)
		}
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// startFenceWatch starts w in a goroutine that ends when ctx does; the
// returned function waits for it.
func startFenceWatch(ctx context.Context, w *fenceWatch) (wait func()) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.run(ctx)
	}()
	return wg.Wait
}
