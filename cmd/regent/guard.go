package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/worker"
)

// newGuardCmd is the hidden entry point of the worker guard: the regent
// binary re-executed by the supervisor around every worker.
func newGuardCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "guard",
		Short:              "internal: run one worker under a dead-man's switch",
		Hidden:             true,
		DisableFlagParsing: true,
		Run: func(cmd *cobra.Command, args []string) {
			os.Exit(worker.RunGuard(args, worker.GuardConfig{
				OnOrphaned:    guardRelease,
				OrphanTimeout: 5 * time.Second,
			}))
		},
	}
}

// guardRelease runs in the last guard of a pool whose supervisor died,
// once every worker of the pool is dead: it releases the term in the
// backend so that a follower takes over without waiting out the lease.
// The release only clears the record if it still holds this term.
func guardRelease(ctx context.Context, info worker.OrphanInfo) error {
	raw := os.Getenv(envGuardRelease)
	if raw == "" {
		return nil
	}
	var rc guardReleaseConfig
	if err := json.Unmarshal([]byte(raw), &rc); err != nil {
		return fmt.Errorf("guard release config: %w", err)
	}
	term, err := strconv.ParseInt(info.Meta["term"], 10, 64)
	if err != nil || term <= 0 {
		return fmt.Errorf("guard release: bad term %q", info.Meta["term"])
	}
	queue := info.Meta["queue"]
	cfg := &config.Config{Cluster: rc.Cluster, Backend: rc.Backend, Etcd: rc.Etcd, Postgres: rc.Postgres,
		NodeID: "guard-" + info.Meta["node"]}
	log := newLogger(config.LogConfig{Level: "error", Format: "text"}, os.Stderr)
	b, err := openBackend(ctx, cfg, electionOptions(cfg, true), log)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = b.Close(cctx)
	}()
	return b.ReleaseTerm(ctx, queue, term)
}

// becomeSubreaper makes orphaned descendants of this process (a worker's
// own children) re-parent to it instead of to init.
func becomeSubreaper() error {
	return worker.SetChildSubreaper()
}
