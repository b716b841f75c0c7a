package main

import (
	"context"
	"errors"
	"fmt"
	"os"
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
			cfg, err := loadConfig(cmd, nil, false)
			if err != nil {
				return err
			}
			log := newLogger(config.LogConfig{Level: "error", Format: cfg.Log.Format}, cmd.ErrOrStderr())
			opts := electionOptions(cfg, true)
			host, _ := os.Hostname()
			opts.Node = "step-down-" + host
			ctx, cancel := context.WithTimeout(cmd.Context(), wait+cfg.Etcd.DialTimeout+cfg.Postgres.DialTimeout)
			defer cancel()
			b, err := openBackend(ctx, cfg, opts, log)
			if err != nil {
				return err
			}
			defer func() {
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				defer cancel()
				_ = b.Close(cctx)
			}()
			before, err := b.Leader(ctx, queue)
			if errors.Is(err, election.ErrNoLeader) {
				return fmt.Errorf("queue %s has no leader to step down", queue)
			}
			if err != nil {
				return err
			}
			if to != "" && before.Node == to {
				fmt.Fprintf(cmd.OutOrStdout(), "%s already leads %s (term %d)\n", to, queue, before.Term)
				return nil
			}
			changes := b.Changes(ctx)
			if err := b.RequestStepDown(ctx, queue, to); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "asked %s (term %d) to step down from %s\n", before.Node, before.Term, queue)
			deadline := time.NewTimer(wait)
			defer deadline.Stop()
			for {
				now, err := b.Leader(ctx, queue)
				if err == nil && now.Term > before.Term {
					fmt.Fprintf(cmd.OutOrStdout(), "%s now leads %s (term %d)\n", now.Node, queue, now.Term)
					return nil
				}
				select {
				case <-changes:
				case <-time.After(200 * time.Millisecond):
				case <-deadline.C:
					return fmt.Errorf("no new leader of %s within %s (is another replica running?)", queue, wait)
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		},
	}
	config.RegisterFlags(cmd.Flags(), config.ScopeBackend)
	cmd.Flags().StringVar(&queue, "queue", "", "queue whose leader should step down (required)")
	cmd.Flags().StringVar(&to, "to", "", "node that should take over")
	cmd.Flags().DurationVar(&wait, "wait", 30*time.Second, "how long to wait for the new leader")
	return cmd
}
