package diagnosis

import (
	"strconv"
	"strings"
	"time"

	"github.com/regentd/regent/control"
)

// CodeDrained is the cluster-wide problem of a drained node (a warning:
// the node leads nothing while another replica can, by the operator's
// request, and so is one replica short of the cluster's redundancy).
const CodeDrained = "drained" // warning

// CodeMixedVersions is the cluster-wide note that live members run
// different versions of regent (an info: normal during a rolling
// upgrade, worth knowing if it lasts).
const CodeMixedVersions = "mixed_versions" // info

// MemberInfo is one live member of the cluster, as the status document's
// "members" list shows it.
type MemberInfo struct {
	Node    string `json:"node"`
	Host    string `json:"host"`
	PID     int    `json:"pid"`
	Version string `json:"version"`
	// HTTPAddr is the address the member's HTTP server listens on (empty:
	// disabled, or an older version).
	HTTPAddr string `json:"http_addr"`
	// Drained: a drain of the node is recorded, or its member record says
	// it obeys one.
	Drained  bool      `json:"drained"`
	LastSeen time.Time `json:"last_seen"`
	// Features are the operator features the member carries out.
	Features []string `json:"features,omitempty"`
}

// ClusterReport is the diagnosis of the cluster as a whole: its members
// and the problems that are no single queue's.
type ClusterReport struct {
	Members  []MemberInfo `json:"members"`
	Problems []Problem    `json:"problems"`
}

// DiagnoseCluster lists the live members of snap, sorted by node, and the
// cluster-wide problems: one drained warning per drain record in ops
// (operator records, control.Parse), whether or not the node runs. Pure,
// like Diagnose.
func DiagnoseCluster(snap Snapshot, ops control.State) ClusterReport {
	out := ClusterReport{Members: []MemberInfo{}, Problems: []Problem{}}
	live := map[string]bool{}
	for _, m := range snap.Members {
		r := m.Record
		live[r.Node] = true
		mi := MemberInfo{Node: r.Node, Host: r.Host, PID: r.PID, LastSeen: r.LastSeen, Drained: ops.Drained(r.Node)}
		if m.Err == nil {
			mi.Version, mi.HTTPAddr, mi.Features = m.Payload.Version, m.Payload.HTTPAddr, m.Payload.Features
			mi.Drained = mi.Drained || m.Payload.Drained
		}
		out.Members = append(out.Members, mi)
	}
	leads := map[string]int{}
	for _, l := range snap.Leaders {
		if l.Err == nil {
			leads[l.Node]++
		}
	}
	for _, node := range ops.DrainedNodes() {
		d := ops.Drains[node]
		msg := "node " + node + " is drained since " + d.Since.UTC().Format(time.RFC3339) + " by " + d.By
		if d.Reason != "" {
			msg += " (" + d.Reason + ")"
		}
		switch n := leads[node]; {
		case !live[node]:
			msg += "; it is not running"
		case n > 0:
			msg += "; it still leads " + strconv.Itoa(n) + " queue(s) (handing over, or no other replica can take them)"
		default:
			msg += "; it leads nothing"
		}
		out.Problems = append(out.Problems, Problem{Severity: Warning, Code: CodeDrained, Message: msg})
	}
	if p, ok := mixedVersions(out.Members); ok {
		out.Problems = append(out.Problems, p)
	}
	for _, err := range ops.Corrupt {
		out.Problems = append(out.Problems, Problem{Severity: Warning, Code: CodeCorruptRecord, Message: "operator record cannot be decoded: " + err.Error()})
	}
	return out
}

// mixedVersions reports the members' versions when they are not all the
// same (members whose version is unknown take no part).
func mixedVersions(members []MemberInfo) (Problem, bool) {
	byVersion := map[string][]string{}
	for _, m := range members {
		if m.Version != "" {
			byVersion[m.Version] = append(byVersion[m.Version], m.Node)
		}
	}
	if len(byVersion) < 2 {
		return Problem{}, false
	}
	parts := make([]string, 0, len(byVersion))
	for _, v := range sortedKeys(byVersion) {
		parts = append(parts, v+" ("+strings.Join(byVersion[v], ", ")+")")
	}
	return Problem{Severity: Info, Code: CodeMixedVersions,
		Message: "live members run " + strconv.Itoa(len(byVersion)) + " versions: " + strings.Join(parts, "; ") + "; normal during a rolling upgrade, finish it"}, true
}
