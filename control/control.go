// Package control is the operator's side of the cluster's records: the
// operator records that `regent pause`, `resume`, `restart`, `drain` and
// `undrain` write in the backend (election.Operator.PutControl) and every
// replica reads, their JSON form, and the features a replica announces in
// its member record so that an operator command can refuse while a live
// member would ignore it.
//
// The records outlive every session: a pause stays until a resume, on
// whichever replica leads; a drain is stored under the node id and so
// survives the node's restart when the id is fixed.
package control

import (
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"sort"
	"time"

	"github.com/regentd/regent/election"
)

// Kinds of operator records (election.Control.Kind). The record's name is
// the queue (pause, restart) or the node (drain).
const (
	KindPause   = "pause"
	KindDrain   = "drain"
	KindRestart = "restart"
)

// Features a replica may announce in its member record
// (diagnosis.MemberPayload.Features).
const (
	FeaturePause   = "pause"
	FeatureDrain   = "drain"
	FeatureRestart = "restart"
	FeatureReload  = "reload"
)

// Features lists what this version of regent supports.
var Features = []string{FeaturePause, FeatureDrain, FeatureRestart, FeatureReload}

// Pause is the record of a paused queue: its leader keeps the leadership
// and runs no worker.
type Pause struct {
	Since  time.Time `json:"since"`
	By     string    `json:"by"`
	Reason string    `json:"reason,omitempty"`
}

// Drain is the record of a drained node: it leads nothing while another
// live replica can.
type Drain struct {
	Since  time.Time `json:"since"`
	By     string    `json:"by"`
	Reason string    `json:"reason,omitempty"`
}

// Restart is a request to restart a queue's workers in place. ID is new
// for every request; a leader carries out each ID once, and announces
// the last one done (diagnosis.MemberQueue.RestartID).
type Restart struct {
	ID      string    `json:"id"`
	Rolling bool      `json:"rolling"`
	At      time.Time `json:"at"`
	By      string    `json:"by"`
	Reason  string    `json:"reason,omitempty"`
}

// State is every operator record of a cluster, decoded.
type State struct {
	Pauses   map[string]Pause   // by queue
	Drains   map[string]Drain   // by node
	Restarts map[string]Restart // by queue
	// Corrupt lists the records that could not be decoded (each error
	// names the record); they take no effect.
	Corrupt []error
}

// Parse decodes the operator records cs. Records of unknown kinds (a
// newer version's) are ignored; undecodable ones are listed in Corrupt.
func Parse(cs []election.Control) State {
	st := State{Pauses: map[string]Pause{}, Drains: map[string]Drain{}, Restarts: map[string]Restart{}}
	for _, c := range cs {
		var err error
		switch c.Kind {
		case KindPause:
			var p Pause
			if err = decode(c.Value, &p); err == nil {
				st.Pauses[c.Name] = p
			}
		case KindDrain:
			var d Drain
			if err = decode(c.Value, &d); err == nil {
				st.Drains[c.Name] = d
			}
		case KindRestart:
			var r Restart
			if err = decode(c.Value, &r); err == nil && r.ID == "" {
				err = fmt.Errorf("no id")
			}
			if err == nil {
				st.Restarts[c.Name] = r
			}
		default:
			continue
		}
		if err != nil {
			st.Corrupt = append(st.Corrupt, fmt.Errorf("%w: %s record of %s: %v", election.ErrCorruptRecord, c.Kind, c.Name, err))
		}
	}
	return st
}

func decode(b []byte, v any) error {
	if len(b) == 0 {
		return fmt.Errorf("empty")
	}
	return json.Unmarshal(b, v)
}

// Encode is the stored form of a record.
func Encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("control: encode: " + err.Error())
	}
	return b
}

// Paused reports whether queue is paused in st.
func (st State) Paused(queue string) bool {
	_, ok := st.Pauses[queue]
	return ok
}

// Drained reports whether node is drained in st.
func (st State) Drained(node string) bool {
	_, ok := st.Drains[node]
	return ok
}

// DrainedNodes lists the drained nodes, sorted.
func (st State) DrainedNodes() []string {
	out := make([]string, 0, len(st.Drains))
	for n := range st.Drains {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Who is "user@host" of this process, recorded with operator actions.
func Who() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

// NewID returns a fresh random request id.
func NewID() string { return election.NewDeploymentID() }
