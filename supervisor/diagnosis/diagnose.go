package diagnosis

import (
	"fmt"
	"sort"
	"time"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/control"
	"github.com/regentd/regent/election"
)

// Member is one member record with its payload decoded.
type Member struct {
	Record  election.MemberRecord
	Payload MemberPayload
	// Err is set when the record or its payload cannot be decoded; such a
	// member takes no part in the diagnosis.
	Err error
}

// Snapshot is one read of the cluster's records: the leader records as
// the backend returned them, and the member records decoded once and
// sorted by node.
type Snapshot struct {
	Leaders []election.LeaderRecord
	Members []Member
}

// NewSnapshot decodes the member records and sorts them by node. It does
// not modify its arguments.
func NewSnapshot(leaders []election.LeaderRecord, members []election.MemberRecord) Snapshot {
	ms := make([]Member, 0, len(members))
	for _, r := range members {
		m := Member{Record: r, Err: r.Err}
		if m.Err == nil {
			m.Payload, m.Err = DecodeMemberPayload(r.Payload)
		}
		ms = append(ms, m)
	}
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].Record.Node < ms[j].Record.Node })
	return Snapshot{Leaders: leaders, Members: ms}
}

// Payloads returns the decodable member payloads by node.
func (s Snapshot) Payloads() map[string]MemberPayload {
	out := make(map[string]MemberPayload, len(s.Members))
	for _, m := range s.Members {
		if m.Err == nil {
			out[m.Record.Node] = m.Payload
		}
	}
	return out
}

// Report is the diagnosis of one queue. Its JSON form is one queue of the
// `regent status --json` document (and of /status): the fields tagged
// "-" are the problems' details, for metrics and log reports.
type Report struct {
	Queue     string     `json:"queue"`
	Leader    *Leader    `json:"leader"`
	Followers []Follower `json:"followers"`
	Problems  []Problem  `json:"problems"`
	// Fence is what the protected resource last accepted for the queue's
	// fence key (AddFence); nil when no fence is configured or no claim
	// was made yet.
	Fence *Fence `json:"fence,omitempty"`
	// Paused is the queue's pause record (regent pause); nil when not
	// paused (AddControl).
	Paused *control.Pause `json:"paused,omitempty"`
	// Claimants are the members that make a split brain; nil when none.
	Claimants []Claim `json:"-"`
	// Stale lists the live workers of an older term than the leader's,
	// past the grace (one stale_worker problem each).
	Stale []StaleWorker `json:"-"`
	// Degraded is true when the leader reports its workers crash-looping.
	Degraded bool `json:"-"`
	// StaleWritesRejected counts the stale-term claims the resource
	// refused for the queue's key in the last FenceRecent (AddFence).
	StaleWritesRejected int `json:"-"`
}

// Leader is a queue's leader: its leader record, with the config it
// publishes and the workers its member record lists.
type Leader struct {
	Node    string            `json:"node"`
	Host    string            `json:"host"`
	PID     int               `json:"pid"`
	Term    int64             `json:"term"`
	Since   time.Time         `json:"since"`
	Version string            `json:"version"`
	Config  *config.Published `json:"config"` // nil: payload undecodable
	// ConfigGeneration is Config's generation (config.Published.Generation);
	// empty when the config is unknown.
	ConfigGeneration string       `json:"config_generation"`
	Workers          []WorkerInfo `json:"workers"`
}

// Follower is a member that lists the queue and is not its leader.
type Follower struct {
	Node     string            `json:"node"`
	Host     string            `json:"host"`
	PID      int               `json:"pid"`
	LastSeen time.Time         `json:"last_seen"`
	Config   *config.Published `json:"config"`
	// ConfigGeneration is Config's generation: equal on every replica
	// whose config is equal, so a rollout shows as generations changing.
	ConfigGeneration string            `json:"config_generation"`
	Conflicts        []config.Conflict `json:"conflicts"`
}

// StaleWorker is a member's live worker pool of an older term.
type StaleWorker struct {
	Node    string
	Term    int64 // the workers' term
	Current int64 // the leader record's term
}

// Has reports whether r has a problem with code.
func (r *Report) Has(code string) bool {
	for _, p := range r.Problems {
		if p.Code == code {
			return true
		}
	}
	return false
}

// Conflicts returns the fields, in field order, where the config of the
// replica node differs from the config the queue's leader publishes.
// There are none for the leader itself, and none when the queue has no
// leader or its config cannot be decoded: a replica conflicts only with a
// config it can read. This is the one conflict rule: the status document
// applies it to every follower, a replica to itself.
func (r *Report) Conflicts(node string, cfg config.Published) []config.Conflict {
	if r == nil || r.Leader == nil || r.Leader.Config == nil || node == r.Leader.Node {
		return nil
	}
	return config.Diff(*r.Leader.Config, cfg)
}

func (r *Report) add(severity, code, format string, args ...any) {
	r.Problems = append(r.Problems, Problem{Severity: severity, Code: code, Message: fmt.Sprintf(format, args...)})
}

// leaderConfig is the leader's published config, nil when unknown.
func (r *Report) leaderConfig() *config.Published {
	if r.Leader == nil {
		return nil
	}
	return r.Leader.Config
}

// Diagnose finds every queue's leader, followers and problems in snap at
// time now, and returns one report per queue, sorted by name. With only
// non-nil, it diagnoses those queues alone, and reports a queue that no
// record names as no_leader ("no replica leads or follows").
//
// Problems of a queue come in this order: its leader record's
// (corrupt_record); then, member by member in node order, stale_worker,
// and the leader's crash_loop, rss_loop, wedged or a follower's
// config_conflict; then no_leader and split_brain.
func Diagnose(snap Snapshot, now time.Time, only []string) []Report {
	d := &diagnoser{now: now, reports: map[string]*Report{}, claims: map[string][]Claim{}}
	if only != nil {
		d.only = make(map[string]bool, len(only))
		for _, name := range only {
			d.only[name] = true
		}
	}
	for _, r := range snap.Leaders {
		d.leader(r)
	}
	for _, m := range snap.Members {
		if m.Err == nil {
			d.member(m)
		}
	}
	return d.finish()
}

// diagnoser holds one Diagnose call's reports as they are built.
type diagnoser struct {
	now     time.Time
	only    map[string]bool // nil: every queue
	reports map[string]*Report
	claims  map[string][]Claim
}

// get returns the report of queue name, nil when name is not diagnosed.
func (d *diagnoser) get(name string) *Report {
	if d.only != nil && !d.only[name] {
		return nil
	}
	r, ok := d.reports[name]
	if !ok {
		r = &Report{Queue: name, Followers: []Follower{}, Problems: []Problem{}}
		d.reports[name] = r
	}
	return r
}

func (d *diagnoser) leader(rec election.LeaderRecord) {
	r := d.get(rec.Queue)
	if r == nil {
		return
	}
	if rec.Err != nil {
		r.add(Critical, CodeCorruptRecord, "leader record cannot be decoded: %v", rec.Err)
		return
	}
	l := &Leader{Node: rec.Node, Host: rec.Host, PID: rec.PID, Term: rec.Term, Since: rec.ElectedAt, Workers: []WorkerInfo{}}
	if p, err := DecodeLeaderPayload(rec.Payload); err == nil {
		l.Version = p.Version
		cfg := p.Config
		l.Config = &cfg
		l.ConfigGeneration = cfg.Generation()
	} else {
		r.add(Warning, CodeCorruptRecord, "leader payload cannot be decoded: %v", err)
	}
	r.Leader = l
}

// member adds what one member's record says of each queue it lists. A
// claim of a term older than the leader record's is stale: a dead
// replica's member record not yet expired, or a live replica whose
// workers must stop by its own deadline. It is a problem only once it
// outlives the grace (split_brain, stale_worker).
func (d *diagnoser) member(m Member) {
	node := m.Record.Node
	for _, name := range sortedKeys(m.Payload.Queues) {
		r := d.get(name)
		if r == nil {
			continue
		}
		mq := m.Payload.Queues[name]
		if mq.Role == election.RoleLeader {
			d.claims[name] = append(d.claims[name], Claim{Node: node, Term: mq.Term, Since: mq.Since})
		}
		d.stale(r, node, mq.WorkerTerms)
		if r.Leader != nil && r.Leader.Node == node {
			leaderWorkers(r, node, mq)
			continue
		}
		cfg := mq.Config
		f := Follower{Node: node, Host: m.Record.Host, PID: m.Record.PID, LastSeen: m.Record.LastSeen,
			Config: &cfg, ConfigGeneration: cfg.Generation(), Conflicts: []config.Conflict{}}
		if c := r.Conflicts(node, cfg); len(c) > 0 {
			f.Conflicts = c
			r.add(Warning, CodeConfigConflict, "follower %s differs from leader %s: %s", node, r.Leader.Node, FormatConflicts(c))
		}
		r.Followers = append(r.Followers, f)
	}
}

// stale reports node's live workers of a term older than the leader's,
// once the leader's term is older than the grace.
func (d *diagnoser) stale(r *Report, node string, terms []int64) {
	l := r.Leader
	if l == nil || d.now.Sub(l.Since) <= Grace(l.Config) {
		return
	}
	for _, t := range terms {
		if t < l.Term {
			r.Stale = append(r.Stale, StaleWorker{Node: node, Term: t, Current: l.Term})
			r.add(Critical, CodeStaleWorker, "node %s still runs workers of term %d; current term is %d", node, t, l.Term)
		}
	}
}

// leaderWorkers adds the workers the leader's member record lists, and
// their problems.
func leaderWorkers(r *Report, node string, mq MemberQueue) {
	r.Leader.Workers = append(r.Leader.Workers, mq.Workers...)
	if mq.Degraded {
		r.Degraded = true
		r.add(Warning, CodeCrashLoop, "workers on leader %s crash-loop (queue degraded)", node)
	}
	for _, w := range mq.Workers {
		if w.RSSLoop {
			r.add(Warning, CodeRSSLoop, "worker %d on %s was killed by the RSS watchdog more than 3 times in 10 minutes", w.Index, node)
		}
		if w.Wedged {
			r.add(Warning, CodeWedged, "worker %d on %s stopped heartbeating", w.Index, node)
		}
	}
}

// finish adds the problems of the whole queue and returns the reports.
func (d *diagnoser) finish() []Report {
	for name, r := range d.reports {
		if r.Leader == nil && !r.Has(CodeCorruptRecord) {
			r.add(Critical, CodeNoLeader, "no replica leads queue %s", name)
		}
		if cs := SplitBrain(d.claims[name], Grace(r.leaderConfig()), d.now); cs != nil {
			r.Claimants = cs
			r.add(Critical, CodeSplitBrain, "%d members claim to lead: %s", len(cs), FormatClaims(cs))
		}
	}
	for name := range d.only {
		if _, ok := d.reports[name]; !ok {
			d.get(name).add(Critical, CodeNoLeader, "no replica leads or follows queue %s", name)
		}
	}
	out := make([]Report, 0, len(d.reports))
	for _, name := range sortedKeys(d.reports) {
		out = append(out, *d.reports[name])
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
