package election

import (
	"fmt"
	"time"
)

// Timing defaults and limits. Each field of Timing says which applies to
// it; config, the supervisor and both backends read them from here.
const (
	// DefaultLeaseTTL is the default Timing.LeaseTTL.
	DefaultLeaseTTL = 10 * time.Second
	// MinLeaseTTL is the shortest Timing.LeaseTTL accepted. The etcd
	// backend asks more: whole seconds, at least 2s (etcd counts lease
	// TTLs in whole seconds and raises shorter ones).
	MinLeaseTTL = time.Second
	// DefaultRetryInterval is the default Timing.RetryInterval.
	DefaultRetryInterval = 500 * time.Millisecond
	// MinDefaultFenceMargin is the floor of the default Timing.FenceMargin
	// (a tenth of the lease TTL); a margin set explicitly may be shorter.
	MinDefaultFenceMargin = 200 * time.Millisecond
	// MaxStepDownHold caps the default Timing.StepDownHold.
	MaxStepDownHold = 5 * time.Second
	// DefaultClockDriftPPM is the clock rate error, in parts per million,
	// assumed of any host unless configured otherwise (NTP slews at most
	// 500 ppm).
	DefaultClockDriftPPM = 500
	// MaxClockDriftPPM is the largest clock rate error accepted.
	MaxClockDriftPPM = 100_000
)

// Timing is the lease timing of one replica. The zero value of every
// field means its default (WithDefaults); Validate checks the limits,
// each documented on its field. Backends use LeaseTTL, RenewInterval,
// RetryInterval, StepDownHold and (Postgres) StaleGrace; the supervisor
// uses LeaseTTL, FenceMargin, RetryInterval and StepDownHold.
type Timing struct {
	// LeaseTTL is how long leadership survives without renewal, counted on
	// the backend's clock from each renewal. Default DefaultLeaseTTL (10s);
	// at least MinLeaseTTL (1s). etcd: whole seconds, at least 2s.
	LeaseTTL time.Duration
	// RenewInterval is how often the session's lease is renewed. Default
	// LeaseTTL/5; positive and at most LeaseTTL/3, so that two renewals can
	// fail before the lease ends.
	RenewInterval time.Duration
	// FenceMargin is subtracted from a leadership's ValidUntil to get the
	// leader's local deadline, at which its workers are stopped. Default
	// LeaseTTL/10, at least MinDefaultFenceMargin (200ms); positive, and
	// FenceMargin + RenewInterval below LeaseTTL. It must also cover the
	// clock drift (ValidateClockDrift).
	FenceMargin time.Duration
	// RetryInterval is how long a follower waits before it tries again
	// when the backend gives no wake-up (a crashed leader's lease
	// expiring), and the first delay of a redial. Default
	// DefaultRetryInterval (500ms); positive.
	RetryInterval time.Duration
	// StaleGrace (Postgres) is how far past its expiry on the server's
	// clock a lease must be before a follower ends the session that still
	// holds the queue's lock. Default LeaseTTL/20, at least 100ms, at most
	// 1s; positive. Ending the session only frees the lock (the takeover
	// still waits out the lease), so the grace is politeness, not safety:
	// see pgbackend's doc.
	StaleGrace time.Duration
	// StepDownHold is how long, after a step-down request, the replica
	// asked to step down (or, when the request names a successor, every
	// other replica) holds back its candidacy. Default LeaseTTL, at most
	// MaxStepDownHold (5s); positive.
	StepDownHold time.Duration
}

// DefaultRenewInterval is the default RenewInterval for a lease of ttl.
func DefaultRenewInterval(ttl time.Duration) time.Duration { return ttl / 5 }

// DefaultFenceMargin is the default FenceMargin for a lease of ttl.
func DefaultFenceMargin(ttl time.Duration) time.Duration {
	return max(ttl/10, MinDefaultFenceMargin)
}

// DefaultStaleGrace is the default StaleGrace for a lease of ttl: ample
// for a live leader past its deadline to free its locks itself, and short
// enough that failover after a frozen or cut-off leader (expiry + grace)
// stays within the TTL + 1s target (pgbackend's settings say why the grace
// is not what makes ending a session safe).
func DefaultStaleGrace(ttl time.Duration) time.Duration {
	return min(max(ttl/20, 100*time.Millisecond), time.Second)
}

// DefaultStepDownHold is the default StepDownHold for a lease of ttl.
func DefaultStepDownHold(ttl time.Duration) time.Duration { return min(ttl, MaxStepDownHold) }

// WithDefaults returns t with every zero field set to its default. The
// defaults that depend on the lease TTL use t's own (or its default).
// Negative fields are left for Validate to refuse.
func (t Timing) WithDefaults() Timing {
	if t.LeaseTTL == 0 {
		t.LeaseTTL = DefaultLeaseTTL
	}
	if t.RenewInterval == 0 {
		t.RenewInterval = DefaultRenewInterval(t.LeaseTTL)
	}
	if t.FenceMargin == 0 {
		t.FenceMargin = DefaultFenceMargin(t.LeaseTTL)
	}
	if t.RetryInterval == 0 {
		t.RetryInterval = DefaultRetryInterval
	}
	if t.StaleGrace == 0 {
		t.StaleGrace = DefaultStaleGrace(t.LeaseTTL)
	}
	if t.StepDownHold == 0 {
		t.StepDownHold = DefaultStepDownHold(t.LeaseTTL)
	}
	return t
}

// TimingError is a Timing that breaks a limit. Settings are named by
// their config keys (lease_ttl, renew_interval, ...).
type TimingError struct {
	// Field is the setting at fault.
	Field string
	// Problem states the limit broken.
	Problem string
	// Fix says which settings to change, or is empty when Problem says it.
	Fix string
}

func (e *TimingError) Error() string {
	if e.Fix == "" {
		return e.Problem
	}
	return e.Problem + ": " + e.Fix
}

// Validate checks every limit of t (see each field), in field order. It
// does not apply defaults: call it on t.WithDefaults(). The error is a
// *TimingError.
func (t Timing) Validate() error {
	if t.LeaseTTL < MinLeaseTTL {
		return &TimingError{Field: "lease_ttl",
			Problem: fmt.Sprintf("lease_ttl %s is too short: use at least %s", t.LeaseTTL, MinLeaseTTL)}
	}
	if t.RenewInterval <= 0 || t.RenewInterval > t.LeaseTTL/3 {
		return &TimingError{Field: "renew_interval",
			Problem: fmt.Sprintf("renew_interval %s must be positive and at most a third of lease_ttl %s, so that two renewals can fail before the lease ends", t.RenewInterval, t.LeaseTTL),
			Fix:     "lower renew_interval or raise lease_ttl"}
	}
	if t.FenceMargin <= 0 || t.FenceMargin+t.RenewInterval >= t.LeaseTTL {
		return &TimingError{Field: "fence_margin",
			Problem: fmt.Sprintf("fence_margin %s must be positive and fence_margin + renew_interval (%s) below lease_ttl %s", t.FenceMargin, t.RenewInterval, t.LeaseTTL),
			Fix:     "lower fence_margin or raise lease_ttl"}
	}
	if t.RetryInterval <= 0 {
		return &TimingError{Field: "retry_interval", Problem: "retry_interval must be positive"}
	}
	if t.StaleGrace <= 0 {
		return &TimingError{Field: "stale_grace", Problem: fmt.Sprintf("stale_grace %s must be positive", t.StaleGrace)}
	}
	if t.StepDownHold <= 0 {
		return &TimingError{Field: "step_down_hold", Problem: fmt.Sprintf("step_down_hold %s must be positive", t.StepDownHold)}
	}
	return nil
}

// ValidateClockDrift checks that driftPPM is in range and that
// t.FenceMargin covers it (MinFenceMargin). The error is a *TimingError.
func (t Timing) ValidateClockDrift(driftPPM int) error {
	if driftPPM < 0 || driftPPM > MaxClockDriftPPM {
		return &TimingError{Field: "clock_drift_ppm",
			Problem: fmt.Sprintf("clock_drift_ppm %d: use 0 to %d parts per million", driftPPM, MaxClockDriftPPM)}
	}
	if need := MinFenceMargin(t.LeaseTTL, driftPPM); t.FenceMargin < need {
		return &TimingError{Field: "fence_margin",
			Problem: fmt.Sprintf("fence_margin %s does not cover a clock rate error of %d ppm on both sides over lease_ttl %s (needs at least %s)", t.FenceMargin, driftPPM, t.LeaseTTL, need),
			Fix:     "raise fence_margin or lower lease_ttl"}
	}
	return nil
}

// MinFenceMargin is the smallest fence margin that covers a clock rate
// error of driftPPM on the leader's host and the opposite error on a
// follower's, over a lease of ttl: the leader may count the lease that
// much too long, and the follower count it that much too short.
func MinFenceMargin(ttl time.Duration, driftPPM int) time.Duration {
	return time.Duration(2 * int64(driftPPM) * int64(ttl) / 1_000_000)
}
