package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/control"
	"github.com/regentd/regent/election"
	"github.com/regentd/regent/fence"
)

const fenceLong = `Fencing at the protected resource (README, Fencing). A lease cannot stop
a write that a worker sent just before it was killed, or a second regent
deployment running the same queue: the resource itself must refuse them.

Each worker gets its fence token in its environment: REGENT_FENCE_KEY (the
queue's fence_key, else its name), REGENT_TERM and REGENT_FENCE_OWNER
("<cluster>/<deployment id>", an id regent creates once in its backend).
Inside its own transaction, before its writes, it calls

  SELECT regent_fence.claim(key, term, owner);

(or the Go helper github.com/regentd/regent/fence). A stale term fails with
SQLSTATE RF001, another deployment's owner with RF002, and the transaction
rolls back. --fence-postgres-url names the workers' database, never regent's
backend.`

func newFenceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fence",
		Short: "Install, print or transfer the fence at the protected resource",
		Long:  fenceLong,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(newFenceInstallCmd(), newFenceSQLCmd(), newFenceTransferCmd())
	return cmd
}

func newFenceSQLCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "sql",
		Short: "Print the SQL that 'fence install' runs, for your own migrations",
		Long: `Print the SQL that 'regent fence install' runs: the schema regent_fence, its
tables and functions. It is idempotent and versioned: run it with your
migrations, as a role that may create a schema (see README, Fencing, for the
grants the workers' role needs).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprint(cmd.OutOrStdout(), fence.SQL())
			return err
		},
	}
}

func newFenceInstallCmd() *cobra.Command {
	var stall time.Duration
	cmd := &cobra.Command{
		Use:   "install --fence-postgres-url URL [--stall-timeout 5s]",
		Short: "Create or upgrade the regent_fence schema in the workers' database",
		Long: `Create or upgrade, idempotently, the schema regent_fence in the workers' own
database: the fence table, the refusal log and the functions claim,
record_refusal and transfer. Run it as a role that may create a schema; grant
the workers' role what README, Fencing lists, and nothing more.`,
		Example: `  regent fence install --fence-postgres-url postgres://admin@db/app
  regent fence sql > migrations/0042_regent_fence.sql`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadFenceConfig(cmd)
			if err != nil {
				return err
			}
			opts := fence.InstallOptions{StallTimeout: stall}
			if err := opts.Validate(); err != nil {
				return fmt.Errorf("--stall-timeout %s: %w", stall, err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			conn, err := connectFence(ctx, cfg.Fence.PostgresURL)
			if err != nil {
				return err
			}
			defer conn.Close(context.WithoutCancel(ctx))
			before, err := fence.InstalledVersion(ctx, conn)
			if err != nil && !errors.Is(err, fence.ErrNotInstalled) {
				return fenceErr("read the installed version", err)
			}
			if err := fence.Install(ctx, conn, opts); err != nil {
				return fenceErr("install", err)
			}
			switch {
			case before == fence.SchemaVersion:
				fmt.Fprintf(cmd.OutOrStdout(), "regent_fence is at version %d already (%s)\n", fence.SchemaVersion, config.RedactURL(cfg.Fence.PostgresURL))
			case before == 0:
				fmt.Fprintf(cmd.OutOrStdout(), "regent_fence version %d installed (%s)\n", fence.SchemaVersion, config.RedactURL(cfg.Fence.PostgresURL))
			default:
				fmt.Fprintf(cmd.OutOrStdout(), "regent_fence upgraded from version %d to %d (%s)\n", before, fence.SchemaVersion, config.RedactURL(cfg.Fence.PostgresURL))
			}
			return nil
		},
	}
	config.RegisterFlags(cmd.Flags(), config.ScopeBackend)
	cmd.Flags().DurationVar(&stall, "stall-timeout", 0, fmt.Sprintf("how long a newer term's claim waits for an older term's open transaction before ending its session (default %s on a first install; 0 keeps the installed value)", fence.DefaultStallTimeout))
	return cmd
}

func newFenceTransferCmd() *cobra.Command {
	var key, to string
	cmd := &cobra.Command{
		Use:   "transfer --fence-postgres-url URL --key K [--to OWNER]",
		Short: "Give a fence key to another deployment, on purpose",
		Long: `Give the resource's fence key K to the deployment OWNER ("<cluster>/<deployment
id>", as 'regent status' shows it under fence). Without --to the new owner is
the deployment that the backend flags name (--backend, --cluster, ...: the
same flags as status). The transfer is recorded with who asked and when. There
is no time-based takeover: ownership moves only through this command. Stop
the old deployment's workers first: from now on their claims are refused
(RF002).`,
		Example: `  regent fence transfer --fence-postgres-url postgres://admin@db/app --key emails --cluster prod
  regent fence transfer --fence-postgres-url postgres://admin@db/app --key emails --to prod/4f1c2a9b0d3e5f67`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadFenceConfig(cmd)
			if err != nil {
				return err
			}
			if key == "" {
				return errors.New("fence transfer needs --key: the fence key to move (a queue's fence_key, else its name)")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			if to == "" {
				if to, err = thisDeployment(ctx, cmd, cfg); err != nil {
					return err
				}
			} else if err := checkOwner(to); err != nil {
				return err
			}
			conn, err := connectFence(ctx, cfg.Fence.PostgresURL)
			if err != nil {
				return err
			}
			defer conn.Close(context.WithoutCancel(ctx))
			rows, err := fence.Rows(ctx, conn, []string{key})
			if err != nil {
				return fenceErr("read key "+key, err)
			}
			if err := fence.Transfer(ctx, conn, key, to, control.Who()); err != nil {
				return fenceErr("transfer", err)
			}
			from := "nobody"
			if len(rows) == 1 {
				from = rows[0].Owner
			}
			fmt.Fprintf(cmd.OutOrStdout(), "fence key %s transferred from %s to %s\n", key, from, to)
			return nil
		},
	}
	config.RegisterFlags(cmd.Flags(), config.ScopeBackend)
	cmd.Flags().StringVar(&key, "key", "", "the fence key to move (a queue's fence_key, else its name)")
	cmd.Flags().StringVar(&to, "to", "", "the new owner, <cluster>/<deployment id>; default the deployment named by the backend flags")
	return cmd
}

// loadFenceConfig loads the config of a fence command, which needs
// fence.postgres_url.
func loadFenceConfig(cmd *cobra.Command) (*config.Config, error) {
	cfg, err := loadConfig(cmd, nil, false)
	if err != nil {
		return nil, err
	}
	if cfg.Fence.PostgresURL == "" {
		return nil, errors.New("no fence database: set --fence-postgres-url, REGENT_FENCE_POSTGRES_URL or fence.postgres_url to the workers' own PostgreSQL (not regent's backend)")
	}
	return cfg, nil
}

// thisDeployment is the owner of the deployment the backend flags name.
func thisDeployment(ctx context.Context, cmd *cobra.Command, cfg *config.Config) (string, error) {
	log := newLogger(config.LogConfig{Level: "error", Format: cfg.Log.Format}, cmd.ErrOrStderr())
	opts := electionOptions(cfg, true)
	opts.Node = "fence-" + opts.Host
	b, err := openBackend(ctx, cfg, opts, log)
	if err != nil {
		return "", err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = b.Close(cctx)
	}()
	return fenceOwner(ctx, b, cfg.Cluster)
}

// checkOwner checks the form of an owner given on the command line.
func checkOwner(owner string) error {
	cluster, id, ok := strings.Cut(owner, "/")
	if !ok || !config.ValidName(cluster) || !election.ValidDeploymentID(id) {
		return fmt.Errorf("--to %q is not an owner: use <cluster>/<deployment id> (16 hex digits), as 'regent status' shows under fence, or leave --to out to name this deployment", owner)
	}
	return nil
}

// fenceErr words an error of the fence's database for the one-line
// message.
func fenceErr(what string, err error) error {
	if errors.Is(err, fence.ErrNotInstalled) {
		return errors.New("regent_fence is not installed in this database: run 'regent fence install --fence-postgres-url URL' first")
	}
	return fmt.Errorf("fence %s: %s", what, config.RedactText(oneLine(err.Error())))
}
