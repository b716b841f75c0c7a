package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/regentd/regent/control"
	"github.com/regentd/regent/election"
	"github.com/regentd/regent/supervisor/diagnosis"
)

const pauseLong = `Pause a queue: its leader keeps the leadership (followers stay followers,
/leader?queue=Q still answers 200 on it) but stops its workers gracefully
(SIGTERM, stop_timeout, SIGKILL). The pause is stored in the backend, so a
leader elected while the queue is paused starts no worker either, until
'regent resume'. Works from any host that reaches the backend.

Waits until the leader's member record shows the queue paused with no worker
(--wait; 0 returns once recorded). While paused, 'regent status --check'
reports a WARNING with code paused, and regent_paused{queue} is 1.

Exit codes: 0 paused (or recorded, with --wait 0); 1 an unknown queue, a live
replica that would ignore the pause (an older regent), a backend error, or
the wait ran out (the pause stays recorded).`

const resumeLong = `Resume a paused queue: delete its pause record; its leader starts the
workers again within one renew interval (at once, as the record's deletion
wakes it).

Waits until the leader's member record shows every worker running
(--wait; 0 returns once recorded).

Exit codes: 0 resumed (or recorded, with --wait 0); 1 an unknown queue, a
backend error, or the wait ran out (the resume stays recorded).`

const restartLong = `Restart a queue's workers in place: its leader stops and starts them
again with no change of leader or term. Without --rolling all at once; with
--rolling one at a time, waiting for each new worker to run (and to heartbeat,
when liveness.heartbeat_timeout is on) before the next, so that at most one
worker is down at any instant.

The request is stored in the backend under a new id; the leader carries it
out once and publishes the id (restart_id in its member record). A leader
elected after the request treats it as done: its workers are newer. Waits
until the leader shows the id and every worker pid differs from before.

Exit codes: 0 every worker was replaced (or recorded, with --wait 0); 1 an
unknown queue, a replica that would ignore it, a backend error, or the wait
ran out (the request stays recorded).`

func newPauseCmd() *cobra.Command {
	var (
		queue, reason string
		all           bool
		wait          time.Duration
	)
	cmd := &cobra.Command{
		Use:   "pause (--queue Q | --all) [--reason TEXT]",
		Short: "Stop a queue's workers cluster-wide; its leader keeps the leadership",
		Long:  pauseLong,
		Example: `  regent pause --queue billing --reason "migration 42"
  regent pause --all --wait 2m --reason "database failover"
  regent status --queue billing        # shows: paused since ... by ...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkQueueFlags(queue, all); err != nil {
				return err
			}
			op, ctx, closeOp, err := openOp(cmd, wait, reason)
			if err != nil {
				return err
			}
			defer closeOp()
			queues, err := op.targetQueues(ctx, queue, all)
			if err != nil {
				return err
			}
			if err := op.requireFeature(ctx, control.FeaturePause, "pause"); err != nil {
				return err
			}
			cs, err := op.b.Controls(ctx)
			if err != nil {
				return err
			}
			st := control.Parse(cs)
			for _, q := range queues {
				if st.Paused(q) {
					op.printf("%s is already paused (since %s by %s)", q, st.Pauses[q].Since.Local().Format(time.DateTime), st.Pauses[q].By)
					continue
				}
				p := control.Pause{Since: time.Now().UTC(), By: control.Who(), Reason: reason}
				if err := op.b.PutControl(ctx, control.KindPause, q, control.Encode(p)); err != nil {
					return err
				}
				if err := op.record(ctx, "pause", q); err != nil {
					return err
				}
				op.printf("paused %s (recorded)", q)
			}
			err = op.await(ctx, "no worker running on the leader of "+strings.Join(queues, ", "), func(ctx context.Context) (bool, error) {
				return op.allQueues(ctx, queues, func(v leaderView) bool {
					return !v.led || (v.mq.Paused && len(v.mq.Workers) == 0)
				})
			})
			if err == nil && wait > 0 {
				op.printf("%s: the leader runs no worker", strings.Join(queues, ", "))
			}
			return err
		},
	}
	addQueueFlags(cmd, &queue, &all)
	addOpFlags(cmd, &wait, &reason)
	return cmd
}

func newResumeCmd() *cobra.Command {
	var (
		queue, reason string
		all           bool
		wait          time.Duration
	)
	cmd := &cobra.Command{
		Use:   "resume (--queue Q | --all)",
		Short: "Start a paused queue's workers again",
		Long:  resumeLong,
		Example: `  regent resume --queue billing
  regent resume --all --wait 0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkQueueFlags(queue, all); err != nil {
				return err
			}
			op, ctx, closeOp, err := openOp(cmd, wait, reason)
			if err != nil {
				return err
			}
			defer closeOp()
			queues, err := op.targetQueues(ctx, queue, all)
			if err != nil {
				return err
			}
			for _, q := range queues {
				if err := op.b.DeleteControl(ctx, control.KindPause, q); err != nil {
					return err
				}
				if err := op.record(ctx, "resume", q); err != nil {
					return err
				}
				op.printf("resumed %s (recorded)", q)
			}
			err = op.await(ctx, "every worker running on the leader of "+strings.Join(queues, ", "), func(ctx context.Context) (bool, error) {
				return op.allQueues(ctx, queues, func(v leaderView) bool {
					return v.led && !v.mq.Paused && workersRun(v.mq, v.lp)
				})
			})
			if err == nil && wait > 0 {
				op.printf("%s: the workers run", strings.Join(queues, ", "))
			}
			return err
		},
	}
	addQueueFlags(cmd, &queue, &all)
	addOpFlags(cmd, &wait, &reason)
	return cmd
}

func newRestartCmd() *cobra.Command {
	var (
		queue, reason string
		rolling       bool
		wait          time.Duration
	)
	cmd := &cobra.Command{
		Use:   "restart --queue Q [--rolling]",
		Short: "Restart a queue's workers in place, without a change of leader",
		Long:  restartLong,
		Example: `  regent restart --queue billing --rolling --reason "worker v2.3 deployed"
  regent restart --queue billing --wait 0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if queue == "" {
				return fmt.Errorf("--queue is required")
			}
			op, ctx, closeOp, err := openOp(cmd, wait, reason)
			if err != nil {
				return err
			}
			defer closeOp()
			if _, err := op.targetQueues(ctx, queue, false); err != nil {
				return err
			}
			if err := op.requireFeature(ctx, control.FeatureRestart, "restart"); err != nil {
				return err
			}
			before := map[int]bool{}
			if v, err := op.leaderView(ctx, queue); err == nil {
				for _, w := range v.mq.Workers {
					before[w.PID] = true
				}
			}
			req := control.Restart{ID: control.NewID(), Rolling: rolling, At: time.Now().UTC(), By: control.Who(), Reason: reason}
			if err := op.b.PutControl(ctx, control.KindRestart, queue, control.Encode(req)); err != nil {
				return err
			}
			if err := op.record(ctx, "restart", queue); err != nil {
				return err
			}
			op.printf("restart %s of %s recorded", req.ID, queue)
			var replaced int
			err = op.await(ctx, "every worker of "+queue+" replaced", func(ctx context.Context) (bool, error) {
				v, err := op.leaderView(ctx, queue)
				if err != nil || !v.led || v.mq.RestartID != req.ID {
					return false, err
				}
				for _, w := range v.mq.Workers {
					if w.PID == 0 || before[w.PID] {
						return false, nil
					}
				}
				replaced = len(v.mq.Workers)
				return true, nil
			})
			if err == nil && wait > 0 {
				op.printf("%s: %d worker(s) replaced", queue, replaced)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&queue, "queue", "", "queue whose workers to restart (required)")
	cmd.Flags().BoolVar(&rolling, "rolling", false, "one worker at a time, each new one running (and heartbeating) before the next")
	addOpFlags(cmd, &wait, &reason)
	return cmd
}

// addQueueFlags registers --queue and --all.
func addQueueFlags(cmd *cobra.Command, queue *string, all *bool) {
	cmd.Flags().StringVar(queue, "queue", "", "the queue")
	cmd.Flags().BoolVar(all, "all", false, "every queue with a leader record, instead of --queue")
}

// checkQueueFlags refuses --queue with --all, and neither.
func checkQueueFlags(queue string, all bool) error {
	if (queue == "") == !all {
		return fmt.Errorf("give either --queue Q or --all")
	}
	return nil
}

// targetQueues is the queue named by --queue, or with --all every queue
// with a leader record. A queue is unknown when it has no leader record
// and no member lists it.
func (op *opCommand) targetQueues(ctx context.Context, queue string, all bool) ([]string, error) {
	if err := checkQueueFlags(queue, all); err != nil {
		return nil, err
	}
	leaders, err := op.b.Leaders(ctx)
	if err != nil {
		return nil, err
	}
	if all {
		var out []string
		for _, r := range leaders {
			out = append(out, r.Queue)
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("no queue has a leader record in cluster %s", op.cfg.Cluster)
		}
		sort.Strings(out)
		return slices.Compact(out), nil
	}
	for _, r := range leaders {
		if r.Queue == queue {
			return []string{queue}, nil
		}
	}
	_, payloads, err := op.liveMembers(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range payloads {
		if _, ok := p.Queues[queue]; ok {
			return []string{queue}, nil
		}
	}
	return nil, fmt.Errorf("unknown queue %s: no leader record and no member lists it in cluster %s", queue, op.cfg.Cluster)
}

// leaderView is what a queue's leader says of it.
type leaderView struct {
	// hasLeader: the queue has a leader record; led: its leader's member
	// record lists the queue as led in the record's term.
	hasLeader, led bool
	mq             diagnosis.MemberQueue
	lp             *diagnosis.LeaderPayload // nil: undecodable
}

// leaderView reads queue's leader record and what its leader's member
// record says of the queue.
func (op *opCommand) leaderView(ctx context.Context, queue string) (leaderView, error) {
	var v leaderView
	rec, err := op.b.Leader(ctx, queue)
	if errors.Is(err, election.ErrNoLeader) {
		return v, nil
	}
	if err != nil {
		return v, err
	}
	v.hasLeader = true
	if p, err := diagnosis.DecodeLeaderPayload(rec.Payload); err == nil {
		v.lp = &p
	}
	recs, payloads, err := op.liveMembers(ctx)
	if err != nil {
		return v, err
	}
	for i, m := range recs {
		if m.Node != rec.Node {
			continue
		}
		if q, ok := payloads[i].Queues[queue]; ok && q.Role == election.RoleLeader && q.Term == rec.Term {
			v.led, v.mq = true, q
		}
	}
	return v, nil
}

// allQueues reports whether ok holds of every queue's leader view; a
// leader that has not published its term yet is waited for.
func (op *opCommand) allQueues(ctx context.Context, queues []string, ok func(v leaderView) bool) (bool, error) {
	for _, q := range queues {
		v, err := op.leaderView(ctx, q)
		if err != nil {
			return false, err
		}
		if (v.hasLeader && !v.led) || !ok(v) {
			return false, nil
		}
	}
	return true, nil
}

// workersRun reports whether the leader runs every worker its config
// asks for.
func workersRun(mq diagnosis.MemberQueue, lp *diagnosis.LeaderPayload) bool {
	want := len(mq.Workers)
	if lp != nil {
		want = lp.Config.Concurrency
	}
	if len(mq.Workers) < want {
		return false
	}
	for _, w := range mq.Workers {
		if w.State != "running" {
			return false
		}
	}
	return true
}
