package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/regentd/regent/config"
)

// Exit codes shared by every command.
const (
	exitOK       = 0
	exitError    = 1
	exitExisting = 2
)

// exitCodeError carries a specific exit code to execute.
type exitCodeError struct {
	code int
	err  error
}

func (e *exitCodeError) Error() string { return e.err.Error() }
func (e *exitCodeError) Unwrap() error { return e.err }

// withCode wraps err so that the process exits with code.
func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitCodeError{code: code, err: err}
}

// errSilent is returned by commands that already printed their result
// and only need to set the exit code.
type errSilent struct{ code int }

func (e errSilent) Error() string { return fmt.Sprintf("exit %d", e.code) }

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "regent",
		Short: "Distributed leader-election supervisor: exactly one supervisor per queue",
		Long: `regent campaigns for leadership of each queue through etcd or PostgreSQL.
Only a queue's leader runs that queue's workers; the other replicas stand by
hot and report conflicts. The lock is (backend, cluster, queue) — nothing
local (no pid file, HOME or path) decides who runs.`,
		Version:       versionLine(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%s (see 'regent %s --help')", err, c.Name())
	})
	root.AddCommand(newRunCmd(), newStatusCmd(), newStepDownCmd(), newPauseCmd(), newResumeCmd(), newRestartCmd(), newFenceCmd(), newConfigCmd(), newDevCmd(), newGuardCmd(), newReleaseTermCmd(), newDemoCmd(), newDemoWorkerCmd())
	root.AddCommand(newDrainCmd(), newUndrainCmd())
	return root
}

// execute runs the CLI and returns the process exit code.
func execute(args []string) int {
	root := newRootCmd(os.Stdout, os.Stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	if err == nil {
		return exitOK
	}
	var silent errSilent
	if errors.As(err, &silent) {
		return silent.code
	}
	fmt.Fprintf(os.Stderr, "regent: %s\n", config.RedactText(oneLine(err.Error())))
	var ce *exitCodeError
	if errors.As(err, &ce) {
		return ce.code
	}
	return exitError
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// newLogger builds the one root logger of the process.
func newLogger(cfg config.LogConfig, w io.Writer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:            "regent",
		Level:           hclog.LevelFromString(cfg.Level),
		JSONFormat:      cfg.Format == "json",
		Output:          w,
		TimeFormat:      "2006-01-02T15:04:05.000Z07:00",
		IncludeLocation: false,
	})
}

// loadConfig loads and validates the configuration of cmd.
func loadConfig(cmd *cobra.Command, command []string, forRun bool) (*config.Config, error) {
	cfg, err := config.Load(cmd.Flags(), command)
	if err != nil {
		return nil, err
	}
	if forRun {
		err = cfg.ValidateRun()
	} else {
		err = cfg.Validate()
	}
	if err != nil {
		return nil, err
	}
	return cfg, nil
}
