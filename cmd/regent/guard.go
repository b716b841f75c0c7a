package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/worker"
)

// guardBinaryName is the lean guard's file name (cmd/regent-guard), looked
// for beside regent's own executable.
const guardBinaryName = "regent-guard"

// guardBinary is what the supervisor runs its guards from, opened once at
// start: the lean guard beside regent, exec'd through its descriptor, with
// regent's own binary (the one this process runs) as the helper that
// releases a term; or, without the lean guard, regent itself re-executed
// (/proc/self/exe guard), which releases the term in-process. Either way a
// guard is the version this supervisor opened, even after a package
// upgrade replaced the files.
type guardBinary struct {
	spec worker.Spec // GuardExe, GuardFile, GuardArgs, HelperFile
}

// fallbackGuard is regent itself as the guard: `/proc/self/exe guard`.
var fallbackGuard = guardBinary{spec: worker.Spec{GuardExe: "/proc/self/exe", GuardArgs: []string{"guard"}}}

// lean reports whether guards run the lean guard.
func (g guardBinary) lean() bool { return g.spec.GuardFile != nil }

// name is what the log says guards run.
func (g guardBinary) name() string {
	if g.lean() {
		return g.spec.GuardExe
	}
	return "regent guard"
}

// Close releases the open executables.
func (g guardBinary) Close() {
	for _, f := range []*os.File{g.spec.GuardFile, g.spec.HelperFile} {
		if f != nil {
			f.Close()
		}
	}
}

// openGuardBinary opens the lean guard beside regent's executable and
// regent's own binary, and checks that the guard runs and speaks this
// supervisor's protocol. Without it (go run, a build of regent alone), or
// when it fails the check (a stale build of another version), guards run
// regent itself, said in one log line.
func openGuardBinary(ctx context.Context, log hclog.Logger) guardBinary {
	self, err := os.Executable()
	if err != nil {
		log.Info("guard", "using", fallbackGuard.name(), "reason", fmt.Sprintf("own executable: %v", err))
		return fallbackGuard
	}
	return openGuardIn(ctx, filepath.Dir(self), log)
}

// openGuardIn is openGuardBinary with the lean guard looked for in dir.
func openGuardIn(ctx context.Context, dir string, log hclog.Logger) guardBinary {
	path := filepath.Join(dir, guardBinaryName)
	guard, err := worker.OpenExecutable(path)
	if err != nil {
		log.Info("guard", "using", fallbackGuard.name(), "missing", path,
			"detail", "each guard is then the whole regent binary: about 4 MB more memory per worker and a slower start; install regent-guard beside regent")
		return fallbackGuard
	}
	helper, err := worker.OpenExecutable("/proc/self/exe")
	if err != nil {
		guard.Close()
		log.Warn("guard", "using", fallbackGuard.name(), "reason", fmt.Sprintf("open own binary: %v", err))
		return fallbackGuard
	}
	g := guardBinary{spec: worker.Spec{GuardExe: path, GuardFile: guard, GuardArgs: []string{}, HelperFile: helper}}
	if err := worker.ProbeGuard(ctx, g.spec); err != nil {
		g.Close()
		log.Warn("guard", "using", fallbackGuard.name(), "unusable", path, "error", err,
			"fix", "install the regent-guard built with this regent")
		return fallbackGuard
	}
	return g
}

// newGuardCmd is the hidden entry point of the fallback worker guard: the
// regent binary re-executed by the supervisor around every worker when
// the lean guard (regent-guard) is not beside it.
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

// newReleaseTermCmd is the hidden command the lean guard runs, from the
// regent binary its supervisor handed it, when it is the last guard of a
// pool whose supervisor died: it releases the term in the backend. The
// backend settings come from REGENT_GUARD_RELEASE in the environment (no
// secrets on argv).
func newReleaseTermCmd() *cobra.Command {
	var (
		queue, node string
		term        int64
		timeout     time.Duration
	)
	cmd := &cobra.Command{
		Use:    "release-term --queue Q --term T --node N",
		Short:  "internal: release the term of a dead supervisor (run by regent-guard)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// Exec'd through /proc/self/fd/3 its comm is "3".
			_ = os.WriteFile("/proc/self/comm", []byte("regent"), 0)
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return releaseTerm(ctx, queue, term, node)
		},
	}
	f := cmd.Flags()
	f.StringVar(&queue, "queue", "", "queue whose term to release")
	f.Int64Var(&term, "term", 0, "the term; the record is cleared only if it still holds it")
	f.StringVar(&node, "node", "", "node id of the dead supervisor")
	f.DurationVar(&timeout, "timeout", 5*time.Second, "give up after this long")
	return cmd
}

// guardRelease runs in the last guard of a pool whose supervisor died,
// once every worker of the pool is dead: it releases the term in the
// backend so that a follower takes over without waiting out the lease.
func guardRelease(ctx context.Context, info worker.OrphanInfo) error {
	term, err := strconv.ParseInt(info.Meta["term"], 10, 64)
	if err != nil {
		return fmt.Errorf("guard release: bad term %q", info.Meta["term"])
	}
	return releaseTerm(ctx, info.Meta["queue"], term, info.Meta["node"])
}

// releaseTerm releases queue's term in the backend that
// REGENT_GUARD_RELEASE describes (nothing without it). The release only
// clears the record if it still holds this term.
func releaseTerm(ctx context.Context, queue string, term int64, node string) error {
	raw := os.Getenv(envGuardRelease)
	if raw == "" {
		return nil
	}
	var rc guardReleaseConfig
	if err := json.Unmarshal([]byte(raw), &rc); err != nil {
		return fmt.Errorf("guard release config: %w", err)
	}
	if term <= 0 || queue == "" {
		return errors.New("guard release: a queue and a positive term are required")
	}
	cfg := &config.Config{Cluster: rc.Cluster, Backend: rc.Backend, Etcd: rc.Etcd, Postgres: rc.Postgres,
		NodeID: "guard-" + node}
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
