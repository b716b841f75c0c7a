package worker

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
)

// The guard protocol: text lines, one message a line, fields separated by
// single spaces.
//
// Control pipe (supervisor → guard, the guard's fd 3):
//
//	deadline <ns>   new absolute deadline, CLOCK_BOOTTIME nanoseconds
//	term            SIGTERM (then SIGCONT) the worker's process group
//	kill            SIGKILL the worker's whole tree now
//
// Report pipe (guard → supervisor, the guard's fd 4):
//
//	hello <version>                the guard's protocol version, first
//	pid <n>                        the worker started with pid n (as the supervisor numbers it)
//	fired <cause>                  the guard is killing the tree (cause: deadline, orphaned, killed)
//	error <text>                   the guard could not start the worker
//	note <text>                    informational (an ignored signal, the orphan hook's result)
//	exit <code> <signal> <cause>   every process of the tree is dead and reaped
//
// Unknown messages are ignored by both sides, so either can grow new ones.
// GuardProtocol changes when the meaning of a message or flag changes;
// the guard refuses a supervisor that speaks another version and the
// supervisor a guard that says another one in its hello.
const GuardProtocol = 3

// Protocol messages.
const (
	msgDeadline = "deadline"
	msgTerm     = "term"
	msgKill     = "kill"

	msgHello = "hello"
	msgPID   = "pid"
	msgFired = "fired"
	msgError = "error"
	msgNote  = "note"
	msgExit  = "exit"
)

// Texts of the guard's error reports that the supervisor tells apart: the
// worker was not started, and it is nobody's fault.
const (
	// msgDeadlinePassedBeforeStart: the newest deadline the guard knew
	// (argv, then the deadline lines already queued) had passed.
	msgDeadlinePassedBeforeStart = "deadline passed before start"
	// msgStoppedBeforeStart: a term or kill line was queued before the
	// worker started.
	msgStoppedBeforeStart = "stopped before start"
	// msgOrphanedBeforeStart: the control pipe hit EOF before the worker
	// started (the supervisor died): the term may already be released.
	msgOrphanedBeforeStart = "orphaned before start"
)

// Fixed descriptors of the guard process.
const (
	guardControlFD = 3
	guardReportFD  = 4
	// guardLockFD holds the pool's group lock, taken shared by the
	// supervisor before the fork.
	guardLockFD = 5
	// guardExeFD is the guard's own executable when the supervisor
	// exec'd it through a descriptor (Spec.GuardFile, -exe-fd): the
	// guard closes it at once.
	guardExeFD = 6
	// guardHelperFD is the helper executable of the orphan hook
	// (Spec.HelperFile, -helper-fd, OrphanInfo.Helper).
	guardHelperFD = 7
)

// Exit codes of the guard itself. Otherwise the guard exits with the
// worker's code, or 128+signal when the worker was killed by a signal.
const (
	// GuardExitError: bad arguments, no control pipe, deadline already
	// passed at start, stopped (term or kill) before start, or an
	// internal failure.
	GuardExitError = 125
	// GuardExitNotStarted: the worker command could not be found or
	// executed.
	GuardExitNotStarted = 127
)

// splitMsg splits a protocol line into its verb and the rest.
func splitMsg(line string) (verb, rest string) {
	verb, rest, _ = strings.Cut(strings.TrimRight(line, "\r\n"), " ")
	return verb, rest
}

// formatExit renders an exit report line.
func formatExit(s ExitStatus) string {
	return fmt.Sprintf("%s %d %d %s", msgExit, s.Code, int(s.Signal), s.Cause)
}

// parseExit parses the arguments of an exit report line.
func parseExit(rest string) (ExitStatus, error) {
	f := strings.Fields(rest)
	if len(f) != 3 {
		return ExitStatus{}, fmt.Errorf("worker: malformed exit report %q", rest)
	}
	code, err := strconv.Atoi(f[0])
	if err != nil {
		return ExitStatus{}, fmt.Errorf("worker: malformed exit code %q: %w", f[0], err)
	}
	sig, err := strconv.Atoi(f[1])
	if err != nil {
		return ExitStatus{}, fmt.Errorf("worker: malformed exit signal %q: %w", f[1], err)
	}
	return ExitStatus{Code: code, Signal: syscall.Signal(sig), Cause: Cause(f[2])}, nil
}
