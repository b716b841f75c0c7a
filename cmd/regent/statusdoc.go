package main

import (
	"context"
	"time"

	"github.com/regentd/regent/control"
	"github.com/regentd/regent/election"
	"github.com/regentd/regent/supervisor/diagnosis"
)

// statusDoc is the `regent status --json` document (and /status).
type statusDoc struct {
	Cluster string        `json:"cluster"`
	Queues  []queueStatus `json:"queues"`
	// Members and Problems are the cluster-wide part of the diagnosis
	// (diagnosis.DiagnoseCluster): the live members, and the problems of
	// no single queue (a drained node).
	diagnosis.ClusterReport
	// Actions is filled by status --history: the last operator actions
	// of the cluster (pause, resume, restart, drain, undrain, ...),
	// newest first.
	Actions []election.Action `json:"actions,omitempty"`
}

// queueStatus is one queue of the document: its diagnosis (queue, leader,
// followers, problems) and, with --history, its last terms.
type queueStatus struct {
	diagnosis.Report
	// History is filled by status --history: the last terms, newest first.
	History []election.HistoryEntry `json:"history,omitempty"`
}

// Problem severities, as --check counts them.
const (
	sevWarning  = diagnosis.Warning
	sevCritical = diagnosis.Critical
)

// buildStatus reads the backend and assembles the status document from
// the records' diagnosis. Only the backend is read: nothing local is
// trusted. An empty cluster is taken from the records.
func buildStatus(ctx context.Context, b election.Backend, cluster, onlyQueue string) (*statusDoc, error) {
	leaders, err := b.Leaders(ctx)
	if err != nil {
		return nil, err
	}
	members, err := b.Members(ctx)
	if err != nil {
		return nil, err
	}
	ops, err := b.Controls(ctx)
	if err != nil {
		return nil, err
	}
	doc := &statusDoc{Cluster: cluster, Queues: []queueStatus{}}
	if doc.Cluster == "" {
		doc.Cluster = recordsCluster(leaders, members)
	}
	var only []string
	if onlyQueue != "" {
		only = []string{onlyQueue}
	}
	st := control.Parse(ops)
	snap := diagnosis.NewSnapshot(leaders, members)
	reports := diagnosis.Diagnose(snap, time.Now(), only)
	diagnosis.AddControl(reports, st)
	for _, r := range reports {
		doc.Queues = append(doc.Queues, queueStatus{Report: r})
	}
	doc.ClusterReport = diagnosis.DiagnoseCluster(snap, st)
	return doc, nil
}

// recordsCluster is the cluster the records name: the first one named,
// leader records first.
func recordsCluster(leaders []election.LeaderRecord, members []election.MemberRecord) string {
	for _, r := range leaders {
		if r.Cluster != "" {
			return r.Cluster
		}
	}
	for _, m := range members {
		if m.Cluster != "" {
			return m.Cluster
		}
	}
	return ""
}

// historyLimit is how many terms status --history shows per queue.
const historyLimit = 10

// actionsLimit is how many operator actions status --history shows.
const actionsLimit = 20

// addHistory attaches the last terms of every queue in doc, and the last
// operator actions of the cluster.
func addHistory(ctx context.Context, b election.Backend, doc *statusDoc) error {
	actions, err := b.Actions(ctx, actionsLimit)
	if err != nil {
		return err
	}
	doc.Actions = actions
	for i := range doc.Queues {
		h, err := b.History(ctx, doc.Queues[i].Queue, historyLimit)
		if err != nil {
			return err
		}
		doc.Queues[i].History = h
	}
	return nil
}
