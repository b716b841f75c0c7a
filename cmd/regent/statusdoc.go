package main

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/election"
	"github.com/regentd/regent/supervisor/diagnosis"
)

// statusDoc is the `regent status --json` document (and /status).
type statusDoc struct {
	Cluster string        `json:"cluster"`
	Queues  []queueStatus `json:"queues"`
}

type queueStatus struct {
	Queue     string              `json:"queue"`
	Leader    *leaderStatus       `json:"leader"`
	Followers []followerStatus    `json:"followers"`
	Problems  []diagnosis.Problem `json:"problems"`
	// History is filled by status --history: the last terms, newest first.
	History []election.HistoryEntry `json:"history,omitempty"`
}

type leaderStatus struct {
	Node    string                 `json:"node"`
	Host    string                 `json:"host"`
	PID     int                    `json:"pid"`
	Term    int64                  `json:"term"`
	Since   time.Time              `json:"since"`
	Version string                 `json:"version"`
	Config  *config.Published      `json:"config"`
	Workers []diagnosis.WorkerInfo `json:"workers"`
}

type followerStatus struct {
	Node      string            `json:"node"`
	Host      string            `json:"host"`
	PID       int               `json:"pid"`
	LastSeen  time.Time         `json:"last_seen"`
	Config    *config.Published `json:"config"`
	Conflicts []config.Conflict `json:"conflicts"`
}

// Problem severities.
const (
	sevWarning  = "warning"
	sevCritical = "critical"
)

// buildStatus reads the backend and assembles the status document. Only
// the backend is read: nothing local is trusted.
func buildStatus(ctx context.Context, b election.Backend, cluster, onlyQueue string) (*statusDoc, error) {
	leaders, err := b.Leaders(ctx)
	if err != nil {
		return nil, err
	}
	members, err := b.Members(ctx)
	if err != nil {
		return nil, err
	}
	doc := &statusDoc{Cluster: cluster, Queues: []queueStatus{}}
	qs := map[string]*queueStatus{}
	get := func(name string) *queueStatus {
		q, ok := qs[name]
		if !ok {
			q = &queueStatus{Queue: name, Followers: []followerStatus{}, Problems: []diagnosis.Problem{}}
			qs[name] = q
		}
		return q
	}
	add := func(q *queueStatus, sev, code, format string, args ...any) {
		q.Problems = append(q.Problems, diagnosis.Problem{Severity: sev, Code: code, Message: fmt.Sprintf(format, args...)})
	}

	for _, r := range leaders {
		if doc.Cluster == "" {
			doc.Cluster = r.Cluster
		}
		q := get(r.Queue)
		if r.Err != nil {
			add(q, sevCritical, "corrupt_record", "leader record cannot be decoded: %v", r.Err)
			continue
		}
		ls := &leaderStatus{Node: r.Node, Host: r.Host, PID: r.PID, Term: r.Term, Since: r.ElectedAt, Workers: []diagnosis.WorkerInfo{}}
		if p, err := diagnosis.DecodeLeaderPayload(r.Payload); err == nil {
			ls.Version = p.Version
			cfg := p.Config
			ls.Config = &cfg
		} else {
			add(q, sevWarning, "corrupt_record", "leader payload cannot be decoded: %v", err)
		}
		q.Leader = ls
	}

	claims := map[string][]diagnosis.Claim{}
	sort.Slice(members, func(i, j int) bool { return members[i].Node < members[j].Node })
	for _, m := range members {
		if doc.Cluster == "" {
			doc.Cluster = m.Cluster
		}
		if m.Err != nil {
			continue
		}
		p, err := diagnosis.DecodeMemberPayload(m.Payload)
		if err != nil {
			continue
		}
		for _, name := range sortedNames(p.Queues) {
			mq := p.Queues[name]
			q := get(name)
			// A claim of a term older than the record's is stale: a dead
			// replica's member record not yet expired, or a live replica
			// whose workers must stop by its own deadline. It is a
			// problem only once it outlives the lease (stale_worker).
			if mq.Role == election.RoleLeader {
				claims[name] = append(claims[name], diagnosis.Claim{Node: m.Node, Term: mq.Term, Since: mq.Since})
			}
			for _, t := range mq.WorkerTerms {
				if q.Leader != nil && t < q.Leader.Term && time.Since(q.Leader.Since) > staleGrace(q.Leader) {
					add(q, sevCritical, "stale_worker", "node %s still runs workers of term %d; current term is %d", m.Node, t, q.Leader.Term)
				}
			}
			if q.Leader != nil && q.Leader.Node == m.Node {
				q.Leader.Workers = append(q.Leader.Workers, mq.Workers...)
				if mq.Degraded {
					add(q, sevWarning, "crash_loop", "workers on leader %s crash-loop (queue degraded)", m.Node)
				}
				for _, w := range mq.Workers {
					if w.RSSLoop {
						add(q, sevWarning, "rss_loop", "worker %d on %s was killed by the RSS watchdog more than 3 times in 10 minutes", w.Index, m.Node)
					}
					if w.Wedged {
						add(q, sevWarning, "wedged", "worker %d on %s stopped heartbeating", w.Index, m.Node)
					}
				}
				continue
			}
			cfg := mq.Config
			fs := followerStatus{Node: m.Node, Host: m.Host, PID: m.PID, LastSeen: m.LastSeen, Config: &cfg, Conflicts: []config.Conflict{}}
			if q.Leader != nil && q.Leader.Config != nil {
				if c := config.Diff(*q.Leader.Config, cfg); len(c) > 0 {
					fs.Conflicts = c
					add(q, sevWarning, "config_conflict", "follower %s differs from leader %s: %s", m.Node, q.Leader.Node, diagnosis.FormatConflicts(c))
				}
			}
			q.Followers = append(q.Followers, fs)
		}
	}
	for name, q := range qs {
		if q.Leader == nil && !hasProblem(q, "corrupt_record") {
			add(q, sevCritical, "no_leader", "no replica leads queue %s", name)
		}
		grace := 11 * time.Second
		if q.Leader != nil {
			grace = staleGrace(q.Leader)
		}
		if cs := diagnosis.SplitBrain(claims[name], grace, time.Now()); len(cs) > 1 {
			add(q, sevCritical, "split_brain", "%d members claim to lead: %s", len(cs), diagnosis.FormatClaims(cs))
		}
	}
	for _, name := range sortedNames(qs) {
		if onlyQueue != "" && name != onlyQueue {
			continue
		}
		doc.Queues = append(doc.Queues, *qs[name])
	}
	if onlyQueue != "" && len(doc.Queues) == 0 {
		q := get(onlyQueue)
		add(q, sevCritical, "no_leader", "no replica leads or follows queue %s", onlyQueue)
		doc.Queues = append(doc.Queues, *q)
	}
	return doc, nil
}

func hasProblem(q *queueStatus, code string) bool {
	for _, p := range q.Problems {
		if p.Code == code {
			return true
		}
	}
	return false
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// staleGrace is how long after a new term began a claim of an older term
// is tolerated: the leader's lease TTL (its published config) plus 1s.
func staleGrace(l *leaderStatus) time.Duration {
	ttl := 10 * time.Second
	if l.Config != nil {
		if d, err := time.ParseDuration(l.Config.LeaseTTL); err == nil && d > 0 {
			ttl = d
		}
	}
	return ttl + time.Second
}

// historyLimit is how many terms status --history shows per queue.
const historyLimit = 10

// addHistory attaches the last terms of every queue in doc.
func addHistory(ctx context.Context, b election.Backend, doc *statusDoc) error {
	for i := range doc.Queues {
		h, err := b.History(ctx, doc.Queues[i].Queue, historyLimit)
		if err != nil {
			return err
		}
		doc.Queues[i].History = h
	}
	return nil
}
