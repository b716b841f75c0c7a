package supervisor

import (
	"testing"
	"time"

	"github.com/regentd/regent/worker"
)

// regent_worker_restarts_total counts what restarts a worker, by reason:
// a fence, a stop or a mere backoff restarts nothing.
func TestRestartReason(t *testing.T) {
	for _, tc := range []struct {
		e    worker.Event
		want string
	}{
		{worker.Event{Kind: worker.EventExited, Cause: worker.ExitCrash}, "crash"},
		{worker.Event{Kind: worker.EventExited, Cause: worker.ExitClean}, "exit"},
		{worker.Event{Kind: worker.EventExited, Cause: worker.ExitRSSWatchdog}, "rss_watchdog"},
		{worker.Event{Kind: worker.EventExited, Cause: worker.ExitWedged}, "wedged"},
		{worker.Event{Kind: worker.EventExited, Cause: worker.ExitFenced}, ""},
		{worker.Event{Kind: worker.EventExited, Cause: worker.ExitStop}, ""},
		{worker.Event{Kind: worker.EventStartFailed}, "start_failed"},
		{worker.Event{Kind: worker.EventBackoff}, ""},
		{worker.Event{Kind: worker.EventStarted}, ""},
	} {
		if got := restartReason(tc.e); got != tc.want {
			t.Errorf("%s/%s: reason %q, want %q", tc.e.Kind, tc.e.Cause, got, tc.want)
		}
	}
}

// A queue with concurrency 0 runs no process, and a pool that cannot be
// built says why from Run.
func TestWorkerPoolsSpecialCases(t *testing.T) {
	f := NewWorkerPools(WorkerPools{})
	if _, ok := f(PoolSpec{Queue: queueCfg("q", 0), Deadline: time.Now().Add(time.Minute)}).(workerPool); !ok {
		t.Fatal("a queue with concurrency 1 should get a worker pool")
	}
	q := queueCfg("q", 0)
	q.Concurrency = 0
	if _, ok := f(PoolSpec{Queue: q}).(leadershipOnlyPool); !ok {
		t.Fatal("concurrency 0: want the leadership-only pool")
	}
	q = queueCfg("q", 0)
	q.Command = nil
	if err := f(PoolSpec{Queue: q, Deadline: time.Now().Add(time.Minute)}).Run(t.Context()); err == nil {
		t.Fatal("a pool without a command must fail from Run")
	}
}
