package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/regentd/regent/control"
	"github.com/regentd/regent/supervisor/diagnosis"
)

const drainLong = `Drain a node before host maintenance: the node hands every queue it leads over
gracefully (workers stopped, then resigned) to the other live replicas, as
balancing would place them, and then holds back its candidacy. It stays a
hot standby: a queue that no other live, non-drained replica campaigns for is
still campaigned for, and kept, by the drained node, until another replica
shows up (so with a single replica, a drain changes nothing and the wait runs
out). A drained node is never a balancing or prefer target; a queue that
prefers it goes to its next live preferred node, else to anyone.

The drain is recorded in the backend under the node id, so it survives the
node's restart when the id is fixed (the shipped unit sets --node-id %H); a
replica started with the default, random node id does not find its drain
after a restart. 'regent undrain --node N' ends it.

Works from any host that reaches the backend, with the backend flags, env and
config file of 'regent status'. Refuses while a live member runs a regent
version that would ignore a drain.

Exit codes:
  0  the node leads nothing (drained within --wait; or recorded, --wait 0)
  1  one line: unknown node (no live member and no drain of that name), a live
     member too old to obey, a backend error, or the wait ran out (the drain
     stays recorded)`

const undrainLong = `End the drain of a node: it campaigns again, and balancing gives it its share
back. Waits until the node's member record no longer shows it drained (at once
if the node is not running).

Exit codes:
  0  the node is no longer drained (or was not)
  1  one line: unknown node, a backend error, or the wait ran out (the drain
     record is gone; the node has not yet shown it)`

func newDrainCmd() *cobra.Command {
	var (
		node, reason string
		wait         time.Duration
	)
	cmd := &cobra.Command{
		Use:   "drain --node N [--reason TEXT] [--wait 60s]",
		Short: "Move every leadership off a node and keep it a standby (host maintenance)",
		Long:  drainLong,
		Example: `  regent drain --node db-host-2 --reason "kernel upgrade" --config /etc/regent.yaml
  regent drain --node db-host-2 --wait 0    # record only; watch 'regent status'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if node == "" {
				return fmt.Errorf("--node is required (a node id as 'regent status' lists it under members)")
			}
			op, ctx, closeOp, err := openOp(cmd, wait, reason)
			if err != nil {
				return err
			}
			defer closeOp()
			return op.drain(ctx, node)
		},
	}
	addOpFlags(cmd, &wait, &reason)
	cmd.Flags().StringVar(&node, "node", "", "node id to drain (required)")
	return cmd
}

func newUndrainCmd() *cobra.Command {
	var (
		node, reason string
		wait         time.Duration
	)
	cmd := &cobra.Command{
		Use:     "undrain --node N [--wait 60s]",
		Short:   "End a node's drain: it campaigns and takes its share again",
		Long:    undrainLong,
		Example: `  regent undrain --node db-host-2 --config /etc/regent.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if node == "" {
				return fmt.Errorf("--node is required")
			}
			op, ctx, closeOp, err := openOp(cmd, wait, reason)
			if err != nil {
				return err
			}
			defer closeOp()
			return op.undrain(ctx, node)
		},
	}
	addOpFlags(cmd, &wait, &reason)
	cmd.Flags().StringVar(&node, "node", "", "node id to undrain (required)")
	return cmd
}

// nodeState is what the records say of one node: its live member record
// (if any) and its drain record (if any).
type nodeState struct {
	live    bool
	member  diagnosis.MemberPayload
	drain   control.Drain
	drained bool
	others  []string // the live members' nodes, for an error message
}

func (op *opCommand) readNode(ctx context.Context, node string) (nodeState, error) {
	var ns nodeState
	recs, payloads, err := op.liveMembers(ctx)
	if err != nil {
		return ns, err
	}
	for i, r := range recs {
		ns.others = append(ns.others, r.Node)
		if r.Node == node {
			ns.live, ns.member = true, payloads[i]
		}
	}
	cs, err := op.b.Controls(ctx)
	if err != nil {
		return ns, err
	}
	ns.drain, ns.drained = control.Parse(cs).Drains[node]
	return ns, nil
}

func (ns nodeState) unknown(node string) error {
	known := "none"
	if len(ns.others) > 0 {
		known = strings.Join(ns.others, ", ")
	}
	return fmt.Errorf("unknown node %s: no live member and no drain of that name (live members: %s)", node, known)
}

// leads returns how many queues node leads according to the leader
// records.
func (op *opCommand) leads(ctx context.Context, node string) (int, error) {
	ls, err := op.b.Leaders(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, l := range ls {
		if l.Err == nil && l.Node == node {
			n++
		}
	}
	return n, nil
}

// drain records a drain of node and waits until it leads nothing and, if
// it runs, its member record shows it obeys.
func (op *opCommand) drain(ctx context.Context, node string) error {
	ns, err := op.readNode(ctx, node)
	if err != nil {
		return err
	}
	if !ns.live && !ns.drained {
		// A name nobody runs is most likely a typo: refuse rather than
		// record a drain that would silently wait for a node that never
		// comes. A node that is down is drained once it runs again.
		return ns.unknown(node)
	}
	if err := op.requireFeature(ctx, control.FeatureDrain, "drain "+node); err != nil {
		return err
	}
	if ns.drained {
		op.printf("node %s is already drained (since %s, by %s)", node, ns.drain.Since.Local().Format(time.DateTime), ns.drain.By)
	} else {
		d := control.Drain{Since: time.Now().UTC(), By: control.Who(), Reason: op.reason}
		if err := op.b.PutControl(ctx, control.KindDrain, node, control.Encode(d)); err != nil {
			return fmt.Errorf("drain %s: %w", node, err)
		}
		if err := op.record(ctx, "drain", node); err != nil {
			return err
		}
		op.printf("drain of node %s recorded", node)
	}
	err = op.await(ctx, "node "+node+" leading nothing", func(ctx context.Context) (bool, error) {
		n, err := op.leads(ctx, node)
		if err != nil || n > 0 {
			return false, err
		}
		ns, err := op.readNode(ctx, node)
		return err == nil && (!ns.live || ns.member.Drained), err
	})
	if err != nil {
		return err
	}
	if op.wait > 0 {
		op.printf("node %s is drained: it leads nothing", node)
	}
	return nil
}

// undrain deletes the drain of node and waits until its member record
// (if it runs) no longer shows it drained.
func (op *opCommand) undrain(ctx context.Context, node string) error {
	ns, err := op.readNode(ctx, node)
	if err != nil {
		return err
	}
	if !ns.live && !ns.drained {
		return ns.unknown(node)
	}
	if !ns.drained && !ns.member.Drained {
		op.printf("node %s is not drained", node)
		return nil
	}
	if ns.drained {
		if err := op.b.DeleteControl(ctx, control.KindDrain, node); err != nil {
			return fmt.Errorf("undrain %s: %w", node, err)
		}
		if err := op.record(ctx, "undrain", node); err != nil {
			return err
		}
		op.printf("drain of node %s removed", node)
	}
	err = op.await(ctx, "node "+node+" undrained", func(ctx context.Context) (bool, error) {
		ns, err := op.readNode(ctx, node)
		return err == nil && !ns.drained && (!ns.live || !ns.member.Drained), err
	})
	if err != nil {
		return err
	}
	if op.wait > 0 {
		op.printf("node %s is no longer drained", node)
	}
	return nil
}
