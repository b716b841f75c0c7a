package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/election"
)

func newStepDownCmd() *cobra.Command {
	var (
		queue, to string
		wait      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "step-down --queue Q [--to NODE]",
		Short: "Ask a queue's leader to hand over gracefully",
		Long: `Ask the leader of a queue to stop its workers and resign, so that another
replica (NODE with --to) takes over. Works from any host with access to the
backend. Waits until a different leader is elected (or --wait passes).

Exit codes: 0 handed over; 1 error (no leader, backend unreachable, no new
leader within --wait).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if queue == "" {
				return fmt.Errorf("--queue is required")
			}
			op, ctx, closeOp, err := openOp(cmd, wait, "")
			if err != nil {
				return err
			}
			defer closeOp()
			return stepDown(ctx, op, queue, to)
		},
	}
	config.RegisterFlags(cmd.Flags(), config.ScopeBackend)
	cmd.Flags().StringVar(&queue, "queue", "", "queue whose leader should step down (required)")
	cmd.Flags().StringVar(&to, "to", "", "node that should take over")
	cmd.Flags().DurationVar(&wait, "wait", 30*time.Second, "how long to wait for the new leader")
	return cmd
}

// stepDown asks the leader of queue to hand over (to node to, if set) and
// waits for a newer term.
func stepDown(ctx context.Context, op *opCommand, queue, to string) error {
	before, err := op.b.Leader(ctx, queue)
	if errors.Is(err, election.ErrNoLeader) {
		return fmt.Errorf("queue %s has no leader to step down", queue)
	}
	if err != nil {
		return err
	}
	if to != "" && before.Node == to {
		op.printf("%s already leads %s (term %d)", to, queue, before.Term)
		return nil
	}
	changes := op.b.Changes(ctx)
	if err := op.b.RequestStepDown(ctx, queue, to); err != nil {
		return err
	}
	op.printf("asked %s (term %d) to step down from %s", before.Node, before.Term, queue)
	deadline := time.NewTimer(op.wait)
	defer deadline.Stop()
	for {
		now, err := op.b.Leader(ctx, queue)
		if err == nil && now.Term > before.Term {
			op.printf("%s now leads %s (term %d)", now.Node, queue, now.Term)
			return nil
		}
		select {
		case <-changes:
		case <-time.After(200 * time.Millisecond):
		case <-deadline.C:
			return fmt.Errorf("no new leader of %s within %s (is another replica running?)", queue, op.wait)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
