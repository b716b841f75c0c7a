package supervisor

import (
	"context"

	"github.com/hashicorp/go-hclog"

	"github.com/regentd/regent/control"
	"github.com/regentd/regent/election"
)

// controlReader reads the operator records for the runners that just won
// a leadership: a new leader starts no worker before a read begun after
// its win (the observer's last read may predate a pause recorded an
// instant before it). One read serves every request made before it
// began, so a replica winning thousands of queues at once costs one or
// two reads, not one per queue. Each read is handed to every runner
// (setControl), which keeps the newest.
type controlReader struct {
	cfg   *Config // read only
	log   hclog.Logger
	clock clock
	// set returns the current runners.
	set func() []*queueRunner
	// kick holds one pending request (size 1, non-blocking sends).
	kick chan struct{}
}

func newControlReader(cfg *Config, c clock, set func() []*queueRunner) *controlReader {
	return &controlReader{cfg: cfg, log: cfg.Logger, clock: c, set: set, kick: make(chan struct{}, 1)}
}

// request asks for a read begun after now. It never blocks; a nil reader
// (a runner built alone in a test) ignores it.
func (c *controlReader) request() {
	if c == nil {
		return
	}
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// run serves the requests until ctx ends: a read for each batch of
// requests, tried again every RetryInterval until it succeeds.
func (c *controlReader) run(ctx context.Context, b election.Backend) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		}
		if c.readUntilDone(ctx, b) != nil {
			return
		}
	}
}

// readUntilDone reads the records and hands them to every runner, again
// after each failure; it fails only when ctx ends.
func (c *controlReader) readUntilDone(ctx context.Context, b election.Backend) error {
	for {
		at := c.clock.Now()
		rctx, cancel := context.WithTimeout(ctx, c.cfg.LeaseTTL/2)
		cs, err := b.Controls(rctx)
		cancel()
		if err == nil {
			st := control.Parse(cs)
			for _, r := range c.set() {
				r.setControl(st, at)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.cfg.Metrics.backendError()
		c.log.Debug("reading the operator records for a new leader failed", "error", err)
		if err := sleepCtx(ctx, c.cfg.RetryInterval); err != nil {
			return err
		}
	}
}
