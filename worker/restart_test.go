package worker

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// running counts the slots whose worker runs.
func running(st []WorkerStatus) int {
	n := 0
	for _, s := range st {
		if s.State == StateRunning {
			n++
		}
	}
	return n
}

// A rolling restart replaces one worker at a time: at every sampled
// instant at least Concurrency-1 run, every pid changes, and no restart
// counts as a crash. With Liveness it waits for each new worker's
// heartbeat.
func TestPoolRollingRestart(t *testing.T) {
	for _, hb := range []time.Duration{0, 2 * time.Second} {
		t.Run("heartbeat="+hb.String(), func(t *testing.T) {
			rp := startPool(t, PoolConfig{Concurrency: 3, Liveness: Liveness{HeartbeatTimeout: hb},
				Spec: Spec{StopTimeout: 5 * time.Second}})
			rp.events.wait(t, 20*time.Second, EventStarted, 3)
			waitFor(t, 10*time.Second, "3 running", func() bool { return running(rp.Status()) == 3 })
			before := map[int]bool{}
			for _, s := range rp.Status() {
				before[s.PID] = true
			}

			stop := make(chan struct{})
			var wg sync.WaitGroup
			minRunning := 3
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					minRunning = min(minRunning, running(rp.Status()))
					time.Sleep(time.Millisecond) // sampling, not waiting
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := rp.Restart(ctx, true)
			close(stop)
			wg.Wait()
			if err != nil {
				t.Fatalf("restart: %v", err)
			}
			if minRunning < 2 {
				t.Errorf("%d worker(s) ran at some instant of a rolling restart, want at least 2", minRunning)
			}
			for _, s := range rp.Status() {
				if before[s.PID] || s.State != StateRunning {
					t.Errorf("worker %d: pid %d state %s after the restart (before: %v)", s.Index, s.PID, s.State, before)
				}
				if s.Crashes != 0 || s.Restarts != 1 {
					t.Errorf("worker %d: %d crashes, %d restarts", s.Index, s.Crashes, s.Restarts)
				}
			}
			for _, e := range rp.events.of(EventExited) {
				if e.Cause != ExitRestart {
					t.Errorf("exit cause %q, want %q", e.Cause, ExitRestart)
				}
			}
		})
	}
}

// Restart without rolling replaces every worker; Reconfigure changes what
// the new ones run with and refuses a new concurrency; Restart returns
// ErrPoolStopped when the pool stops under it.
func TestPoolRestartAllAndReconfigure(t *testing.T) {
	rp := startPool(t, PoolConfig{Concurrency: 2, Spec: Spec{StopTimeout: 5 * time.Second}})
	waitFor(t, 20*time.Second, "2 running", func() bool { return running(rp.Status()) == 2 })
	cfg := rp.conf()
	next := *cfg
	next.MaxRSSMB = 4321
	if err := rp.Reconfigure(next); err != nil {
		t.Fatal(err)
	}
	bad := next
	bad.Concurrency = 3
	if err := rp.Reconfigure(bad); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("reconfigure to concurrency 3: %v, want ErrInvalidSpec", err)
	}
	old := rp.Status()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rp.Restart(ctx, false); err != nil {
		t.Fatal(err)
	}
	for i, s := range rp.Status() {
		if s.PID == old[i].PID || s.State != StateRunning {
			t.Errorf("worker %d: pid %d (was %d), state %s", i, s.PID, old[i].PID, s.State)
		}
	}
	if got := rp.conf().MaxRSSMB; got != 4321 {
		t.Errorf("max_rss_mb %d after reconfigure", got)
	}

	if err := rp.stop(); err != nil {
		t.Fatal(err)
	}
	if err := rp.Restart(ctx, true); !errors.Is(err, ErrPoolStopped) {
		t.Errorf("restart of a stopped pool: %v", err)
	}
}
