package supervisor

import (
	"sync/atomic"
	"time"
)

// holds is a queue's hold-back of its candidacy. The observer sets it (a
// step-down request naming another node, or this one) and the balancer's
// decisions set it; the queue's runner waits it out. It is the runner's
// mailbox: an immutable value swapped atomically, and a wake-up channel
// of size 1 that collapses bursts.
type holds struct {
	v    atomic.Pointer[holdState]
	wake chan struct{}
}

// holdState is one value of a queue's holds.
type holdState struct {
	// until: no candidacy before (after a step-down, or a step-down
	// request to another node).
	until time.Time
	// balance: no candidacy before (balancing, see balance.go).
	balance time.Time
	// balanceLed: balance was set while another replica led the queue;
	// it delays a new campaign but does not interrupt one under way (see
	// queueRunner.campaign).
	balanceLed bool
	// drain: no candidacy before, and a campaign under way is
	// interrupted (this replica's node is drained and another live
	// replica can take the queue; refreshed by every observation, see
	// balancer.drain).
	drain time.Time
}

func newHolds() *holds { return &holds{wake: make(chan struct{}, 1)} }

// left returns how long the queue is still held back at now, counting a
// balance hold set while another replica leads only if withLed (0 or
// less: it is not).
func (h *holds) left(now time.Time, withLed bool) time.Duration {
	var s holdState
	if p := h.v.Load(); p != nil {
		s = *p
	}
	until := s.until
	if s.drain.After(until) {
		until = s.drain
	}
	if (withLed || !s.balanceLed) && s.balance.After(until) {
		until = s.balance
	}
	return until.Sub(now)
}

// steppedDown holds the queue back until until, after this replica
// stepped down.
func (h *holds) steppedDown(until time.Time) {
	update(&h.v, func(s holdState) holdState { s.until = until; return s })
}

// extend holds the queue back at least until until (a step-down request
// naming another node).
func (h *holds) extend(until time.Time) {
	update(&h.v, func(s holdState) holdState {
		if until.After(s.until) {
			s.until = until
		}
		return s
	})
	h.signal()
}

// clear ends every hold: this replica is asked to take the queue over.
func (h *holds) clear() {
	h.v.Store(&holdState{})
	h.signal()
}

// holdBalance holds the queue back for balancing: while it is led by
// another replica (led; for max, refreshed by every observation), and
// for delay once it is seen free.
func (h *holds) holdBalance(now time.Time, led bool, delay, max time.Duration) {
	update(&h.v, func(s holdState) holdState {
		if led {
			s.balance, s.balanceLed = now.Add(max), true
		} else if s.balance.IsZero() || s.balanceLed || s.balance.After(now.Add(delay)) {
			s.balance, s.balanceLed = now.Add(delay), false
		}
		return s
	})
	h.signal()
}

// clearBalance ends a balance hold.
func (h *holds) clearBalance() {
	old, _ := update(&h.v, func(s holdState) holdState {
		s.balance, s.balanceLed = time.Time{}, false
		return s
	})
	if !old.balance.IsZero() {
		h.signal()
	}
}

// holdDrain holds the queue back until until, interrupting a campaign
// under way: this replica's node is drained and another live replica can
// take the queue. The observation that set it refreshes it.
func (h *holds) holdDrain(now, until time.Time) {
	old, _ := update(&h.v, func(s holdState) holdState {
		if until.After(s.drain) {
			s.drain = until
		}
		return s
	})
	if !old.drain.After(now) {
		h.signal()
	}
}

// clearDrain ends a drain hold: the node is no longer drained, or no
// other live replica can take the queue (this one stands by for it).
func (h *holds) clearDrain() {
	old, _ := update(&h.v, func(s holdState) holdState {
		s.drain = time.Time{}
		return s
	})
	if !old.drain.IsZero() {
		h.signal()
	}
}

func (h *holds) signal() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}
