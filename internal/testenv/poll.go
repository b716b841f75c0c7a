package testenv

import (
	"context"
	"fmt"
	"time"
)

// pollInterval is the pause between two readiness probes.
const pollInterval = 25 * time.Millisecond

// poll calls probe until it returns nil, stop is closed or timeout passes;
// each probe gets a context bounded by the remaining time. It returns the
// last probe error when it gives up.
func poll(timeout time.Duration, stop <-chan struct{}, probe func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		err := probe(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %w", timeout, err)
		case <-stop:
			return fmt.Errorf("process exited: %w", err)
		case <-tick.C:
		}
	}
}
