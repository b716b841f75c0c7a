package supervisor

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/control"
	"github.com/regentd/regent/election"
)

// Requests made while a read is under way are served by one more read,
// not one each; every runner gets the read, stamped with when it began.
func TestControlReaderServesABatchOfRequestsWithOneRead(t *testing.T) {
	fb := newFakeBackend()
	fb.controlsGate = make(chan struct{})
	_ = fb.PutControl(context.Background(), control.KindPause, "q1", control.Encode(control.Pause{By: "op@host"}))
	cfg := &Config{Timing: election.Timing{LeaseTTL: time.Second}.WithDefaults(), Logger: hclog.NewNullLogger()}
	var runners []*queueRunner
	for _, name := range []string{"q1", "q2"} {
		runners = append(runners, newQueueRunner(cfg, queueCfg(name, 0), config.Published{}, nil, wallClock{}, newMemberPublisher(cfg)))
	}
	cr := newControlReader(cfg, wallClock{}, func() []*queueRunner { return runners })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); cr.run(ctx, fb) }()
	t.Cleanup(func() { cancel(); <-done })

	cr.request()
	waitFor(t, "the first read under way", func() bool { return fb.reads() == 1 })
	asked := time.Now()
	for range 100 { // a hundred queues won while it runs
		cr.request()
	}
	fb.controlsGate <- struct{}{} // the first read ends
	fb.controlsGate <- struct{}{} // one more serves the hundred
	waitFor(t, "the second read handed over", func() bool {
		c := runners[1].control.Load()
		return c != nil && !c.readAt.Before(asked)
	})
	// The hundred came before the second read began: nothing is left
	// pending for a third.
	if n, pending := fb.reads(), len(cr.kick); n != 2 || pending != 0 {
		t.Fatalf("%d reads and %d pending for 101 requests, want 2 and 0", n, pending)
	}
	if c := runners[0].control.Load(); c == nil || c.pause == nil {
		t.Error("q1's pause not handed to its runner")
	}
	if c := runners[1].control.Load(); c.pause != nil {
		t.Error("q2 got q1's pause")
	}
}
