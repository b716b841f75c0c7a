package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Published is the effective config of one queue as a leader publishes it
// in its leader record and a follower in its member record: secrets
// redacted, durations as strings, stable JSON field names.
type Published struct {
	Command     []string         `json:"command"`
	Concurrency int              `json:"concurrency"`
	MaxRSSMB    int              `json:"max_rss_mb"`
	StopTimeout string           `json:"stop_timeout"`
	LeaseTTL    string           `json:"lease_ttl"`
	Restart     PublishedRestart `json:"restart"`
	Liveness    PublishedLive    `json:"liveness"`
	// FenceKey is the queue's fence_key as configured (empty: the queue
	// name), so that replicas fencing under different keys conflict.
	FenceKey string `json:"fence_key,omitempty"`
}

// PublishedRestart is the published restart policy.
type PublishedRestart struct {
	InitialBackoff string `json:"initial_backoff"`
	MaxBackoff     string `json:"max_backoff"`
	ResetAfter     string `json:"reset_after"`
	MaxCrashes     int    `json:"max_crashes"`
}

// PublishedLive is the published liveness policy.
type PublishedLive struct {
	HeartbeatTimeout string `json:"heartbeat_timeout"`
	StartupGrace     string `json:"startup_grace"`
}

// Publish returns the published form of queue q under lease ttl.
func (q QueueConfig) Publish(leaseTTL time.Duration) Published {
	r := q.Redacted()
	return Published{
		Command:     r.Command,
		Concurrency: r.Concurrency,
		MaxRSSMB:    r.MaxRSSMB,
		StopTimeout: r.StopTimeout.String(),
		LeaseTTL:    leaseTTL.String(),
		Restart: PublishedRestart{
			InitialBackoff: r.Restart.InitialBackoff.String(),
			MaxBackoff:     r.Restart.MaxBackoff.String(),
			ResetAfter:     r.Restart.ResetAfter.String(),
			MaxCrashes:     r.Restart.MaxCrashes,
		},
		Liveness: PublishedLive{
			HeartbeatTimeout: r.Liveness.HeartbeatTimeout.String(),
			StartupGrace:     r.Liveness.StartupGrace.String(),
		},
		FenceKey: r.FenceKey,
	}
}

// Field is one named value of a published config.
type Field struct {
	Name  string
	Value string
}

// Fields lists p's values in a fixed order, for comparison and display.
func (p Published) Fields() []Field {
	return []Field{
		{"command", strings.Join(p.Command, " ")},
		{"concurrency", strconv.Itoa(p.Concurrency)},
		{"max_rss_mb", strconv.Itoa(p.MaxRSSMB)},
		{"stop_timeout", p.StopTimeout},
		{"lease_ttl", p.LeaseTTL},
		{"restart.initial_backoff", p.Restart.InitialBackoff},
		{"restart.max_backoff", p.Restart.MaxBackoff},
		{"restart.reset_after", p.Restart.ResetAfter},
		{"restart.max_crashes", strconv.Itoa(p.Restart.MaxCrashes)},
		{"liveness.heartbeat_timeout", p.Liveness.HeartbeatTimeout},
		{"liveness.startup_grace", p.Liveness.StartupGrace},
		{"fence_key", p.FenceKey},
	}
}

// Generation is a short hash of p's fields: the fields that conflicts
// compare, nothing node-specific, so that equal configs have equal
// generations on every replica.
func (p Published) Generation() string {
	h := sha256.New()
	for _, f := range p.Fields() {
		fmt.Fprintf(h, "%s=%q\n", f.Name, f.Value)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// Conflict is one field whose value differs between a queue's leader and
// another replica.
type Conflict struct {
	Field    string `json:"field"`
	Leader   string `json:"leader"`
	Follower string `json:"follower"`
}

// Diff lists the fields where follower differs from leader, in field order.
func Diff(leader, follower Published) []Conflict {
	lf, ff := leader.Fields(), follower.Fields()
	var out []Conflict
	for i := range lf {
		if lf[i].Value != ff[i].Value {
			out = append(out, Conflict{Field: lf[i].Name, Leader: lf[i].Value, Follower: ff[i].Value})
		}
	}
	return out
}
