package diagnosis

import (
	"fmt"
	"time"
)

// Fence problem codes (README, Fencing).
const (
	// CodeForeignOwner (critical): the resource's fence for the queue's
	// key is owned by another deployment, or another deployment's claims
	// were refused recently: two deployments run the queue.
	CodeForeignOwner = "foreign_owner"
	// CodeStaleWriteRejected (warning): the resource refused a stale
	// term's claim recently: the fence stopped an old term's write.
	CodeStaleWriteRejected = "stale_write_rejected"
	// CodeFenceUnreadable (warning): a fence is configured, but it could
	// not be read (unreachable, not installed, no grant).
	CodeFenceUnreadable = "fence_unreadable"
)

// Refusal codes of the fence (the SQLSTATEs of regent_fence.claim).
const (
	RefusalStaleTerm    = "RF001"
	RefusalForeignOwner = "RF002"
)

// FenceRecent is how far back refusals count as recent: a refusal older
// than this no longer makes a problem.
const FenceRecent = 10 * time.Minute

// Fence is what the protected resource last accepted for a queue's key:
// the `fence` object of a queue in `regent status --json`.
type Fence struct {
	Key        string    `json:"key"`
	Term       int64     `json:"term"`
	Owner      string    `json:"owner"`
	At         time.Time `json:"at"`
	OwnerSince time.Time `json:"owner_since"`
}

// FenceRefusal is one claim the resource refused, as recorded there.
type FenceRefusal struct {
	At    time.Time
	Key   string
	Term  int64
	Owner string
	Node  string
	Code  string // RefusalStaleTerm or RefusalForeignOwner
}

// FenceView is the resource's fence as one observer read it: the rows of
// the keys it asked for, the refusals recorded since FenceRecent, and the
// observer's own deployment (the owner its workers claim as).
type FenceView struct {
	// Owner is this deployment's owner, "<cluster>/<deployment id>".
	Owner string
	// Rows holds the fence row of each key that has one.
	Rows map[string]Fence
	// Refusals are the recent refusals, of every key, any order.
	Refusals []FenceRefusal
	// Err is set when the fence could not be read; the rest is empty.
	Err error
}

// FenceKey is the key the workers of r's queue claim, as the queue's
// leader publishes it: its fence_key, else the queue name.
func (r *Report) FenceKey() string {
	if c := r.leaderConfig(); c != nil && c.FenceKey != "" {
		return c.FenceKey
	}
	return r.Queue
}

// AddFence attaches to r what v says of key at time now: the fence row
// (Report.Fence) and the problems. Like Diagnose it is pure: every
// observer of the same resource finds the same problems.
func (r *Report) AddFence(key string, v FenceView, now time.Time) {
	if v.Err != nil {
		r.add(Warning, CodeFenceUnreadable, "the fence at the resource cannot be read: %v", v.Err)
		return
	}
	row, ok := v.Rows[key]
	if ok {
		f := row
		r.Fence = &f
		if row.Owner != v.Owner {
			r.add(Critical, CodeForeignOwner, "the resource's fence for key %q is owned by %s since %s, not by this deployment (%s): this deployment's workers are refused; if it should own the key, move it with 'regent fence transfer --key %s --to %s'",
				key, row.Owner, row.OwnerSince.UTC().Format(time.RFC3339), v.Owner, key, v.Owner)
		}
	}
	var foreign, stale []FenceRefusal
	for _, f := range v.Refusals {
		if f.Key != key || now.Sub(f.At) > FenceRecent {
			continue
		}
		switch {
		case f.Code == RefusalForeignOwner && f.Owner != v.Owner:
			foreign = append(foreign, f)
		case f.Code == RefusalStaleTerm:
			stale = append(stale, f)
		}
	}
	if f, n := latest(foreign); n > 0 {
		r.add(Critical, CodeForeignOwner, "%s of another deployment, %s (node %s, term %d, at %s), for key %q: two deployments run this queue; stop the one that should not",
			refusedClaims(n), f.Owner, f.Node, f.Term, f.At.UTC().Format(time.RFC3339), key)
	}
	if f, n := latest(stale); n > 0 {
		current := "unknown"
		if ok {
			current = fmt.Sprint(row.Term)
		}
		r.add(Warning, CodeStaleWriteRejected, "%s of a stale term for key %q in the last %s, the latest from node %s with term %d at %s (current term %s): the fence stopped an old term's write",
			refusedClaims(n), key, FenceRecent, f.Node, f.Term, f.At.UTC().Format(time.RFC3339), current)
	}
	r.StaleWritesRejected = len(stale)
}

// latest returns the most recent of fs and how many there are.
func latest(fs []FenceRefusal) (FenceRefusal, int) {
	var out FenceRefusal
	for _, f := range fs {
		if f.At.After(out.At) {
			out = f
		}
	}
	return out, len(fs)
}

func refusedClaims(n int) string {
	if n == 1 {
		return "1 refused claim"
	}
	return fmt.Sprintf("%d refused claims", n)
}
