package worker

import (
	"fmt"
	"syscall"
)

// Cause says why a worker ended.
type Cause string

// Causes, as reported by the guard (or inferred by the supervisor side for
// CauseGuardLost).
const (
	// CauseExited: the worker exited by itself (also after a SIGTERM that
	// the supervisor asked for).
	CauseExited Cause = "exited"
	// CauseDeadline: the guard's deadline passed and it killed the tree.
	CauseDeadline Cause = "deadline"
	// CauseOrphaned: the control pipe hit EOF (the supervisor died or let
	// go) and the guard killed the tree.
	CauseOrphaned Cause = "orphaned"
	// CauseKilled: the supervisor asked the guard to SIGKILL the tree.
	CauseKilled Cause = "killed"
	// CauseGuardLost: the guard died without reporting; the worker's group
	// was SIGKILLed by the supervisor side as a fallback.
	CauseGuardLost Cause = "guard_lost"
	// CauseBackstop: the guard did not end the tree by its deadline (or a
	// kill) plus the grace, and the supervisor side SIGKILLed the guard.
	CauseBackstop Cause = "backstop"
)

// ExitStatus is how a worker ended.
type ExitStatus struct {
	// Code is the worker's exit code, or -1 when it was killed by a signal
	// or never reported.
	Code int `json:"code"`
	// Signal is the signal that killed the worker, or 0.
	Signal syscall.Signal `json:"signal,omitempty"`
	// Cause says why it ended.
	Cause Cause `json:"cause"`
}

// Success reports whether the worker exited by itself with code 0.
func (s ExitStatus) Success() bool { return s.Code == 0 && s.Signal == 0 }

// GuardCode is the exit code a guard uses for this status: the worker's
// exit code, or 128+signal.
func (s ExitStatus) GuardCode() int {
	if s.Signal != 0 {
		return 128 + int(s.Signal)
	}
	if s.Code < 0 {
		return GuardExitError
	}
	return s.Code
}

// String renders the status for logs.
func (s ExitStatus) String() string {
	if s.Signal != 0 {
		return fmt.Sprintf("signal %s (%s)", s.Signal, s.Cause)
	}
	return fmt.Sprintf("exit %d (%s)", s.Code, s.Cause)
}
