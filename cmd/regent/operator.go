package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/control"
	"github.com/regentd/regent/election"
	"github.com/regentd/regent/supervisor/diagnosis"
)

// defaultOpWait is the default --wait of the operator commands.
const defaultOpWait = 60 * time.Second

// opCommand is one run of an operator command (pause, resume, restart,
// drain, undrain): its config, a read-only backend (operators need no
// session), and the --wait and --reason flags.
type opCommand struct {
	cmd    *cobra.Command
	cfg    *config.Config
	b      election.Backend
	wait   time.Duration
	reason string
}

// addOpFlags registers the flags every operator command shares: the
// backend flags of status, --wait and --reason.
func addOpFlags(cmd *cobra.Command, wait *time.Duration, reason *string) {
	config.RegisterFlags(cmd.Flags(), config.ScopeBackend)
	cmd.Flags().DurationVar(wait, "wait", defaultOpWait, "how long to wait until the effect is observed; 0 returns once the request is recorded")
	if reason != nil {
		cmd.Flags().StringVar(reason, "reason", "", "why, recorded with the action (shown by status --history)")
	}
}

// openOp loads the config and opens a read-only backend for an operator
// command; close releases it. ctx bounds the whole command: --wait plus
// the time to connect.
func openOp(cmd *cobra.Command, wait time.Duration, reason string) (op *opCommand, ctx context.Context, closeOp func(), err error) {
	if wait < 0 {
		return nil, nil, nil, fmt.Errorf("--wait %s is negative: give a duration such as 60s, or 0 to return once recorded", wait)
	}
	cfg, err := loadConfig(cmd, nil, false)
	if err != nil {
		return nil, nil, nil, err
	}
	log := newLogger(config.LogConfig{Level: "error", Format: cfg.Log.Format}, cmd.ErrOrStderr())
	opts := electionOptions(cfg, true)
	host, _ := os.Hostname()
	opts.Node = cmd.Name() + "-" + host
	ctx, cancel := context.WithTimeout(cmd.Context(), wait+cfg.Etcd.DialTimeout+cfg.Postgres.DialTimeout+10*time.Second)
	b, err := openBackend(ctx, cfg, opts, log)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	closeOp = func() {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer ccancel()
		_ = b.Close(cctx)
		cancel()
	}
	return &opCommand{cmd: cmd, cfg: cfg, b: b, wait: wait, reason: reason}, ctx, closeOp, nil
}

// record appends the action to the cluster's operator log (status
// --history shows it).
func (op *opCommand) record(ctx context.Context, action, target string) error {
	err := op.b.RecordAction(ctx, election.Action{At: time.Now().UTC(), Action: action, Target: target, By: control.Who(), Reason: op.reason})
	if err != nil {
		return fmt.Errorf("%s %s is recorded, but its entry in the operator log is not: %w", action, target, err)
	}
	return nil
}

// printf writes a line of the command's output.
func (op *opCommand) printf(format string, args ...any) {
	fmt.Fprintf(op.cmd.OutOrStdout(), format+"\n", args...)
}

// await waits, for at most --wait, until observed reports true; it
// checks at once, on every change of the records and every 200 ms. With
// --wait 0 it returns nil at once. The error when the wait runs out says
// what was not observed and that the request stays recorded.
func (op *opCommand) await(ctx context.Context, what string, observed func(ctx context.Context) (bool, error)) error {
	if op.wait == 0 {
		return nil
	}
	changes := op.b.Changes(ctx)
	deadline := time.NewTimer(op.wait)
	defer deadline.Stop()
	var lastErr error
	for {
		ok, err := observed(ctx)
		if err == nil && ok {
			return nil
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-changes:
		case <-time.After(200 * time.Millisecond):
		case <-deadline.C:
			msg := fmt.Sprintf("%s not observed within %s; the request stays recorded (undo it, or wait and check 'regent status')", what, op.wait)
			if lastErr != nil {
				msg += "; last read failed: " + config.RedactText(oneLine(lastErr.Error()))
			}
			return fmt.Errorf("%s", msg)
		case <-ctx.Done():
			return fmt.Errorf("%s not observed: %w; the request stays recorded", what, ctx.Err())
		}
	}
}

// liveMembers reads the member records of the live replicas, decoded; a
// record that cannot be decoded is returned with a zero payload.
func (op *opCommand) liveMembers(ctx context.Context) ([]election.MemberRecord, []diagnosis.MemberPayload, error) {
	recs, err := op.b.Members(ctx)
	if err != nil {
		return nil, nil, err
	}
	payloads := make([]diagnosis.MemberPayload, len(recs))
	for i, r := range recs {
		if r.Err == nil {
			payloads[i], _ = diagnosis.DecodeMemberPayload(r.Payload)
		}
	}
	return recs, payloads, nil
}

// requireFeature refuses, with one line naming them, while a live member
// would ignore the feature (a replica of an older version during a
// rolling upgrade).
func (op *opCommand) requireFeature(ctx context.Context, feature, verb string) error {
	recs, payloads, err := op.liveMembers(ctx)
	if err != nil {
		return err
	}
	var old []string
	for i, r := range recs {
		if !slices.Contains(payloads[i].Features, feature) {
			v := payloads[i].Version
			if v == "" {
				v = "unknown version"
			}
			old = append(old, fmt.Sprintf("%s (%s)", r.Node, v))
		}
	}
	if len(old) > 0 {
		return fmt.Errorf("cannot %s: live member(s) %s would ignore it (an older regent); upgrade them first", verb, strings.Join(old, ", "))
	}
	return nil
}
