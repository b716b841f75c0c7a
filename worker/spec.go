package worker

import (
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
)

// DefaultStopTimeout is Spec.StopTimeout when unset.
const DefaultStopTimeout = 10 * time.Second

// DefaultBackstopGrace is Spec.BackstopGrace when unset: half the
// smallest fence margin regent allows (200 ms).
const DefaultBackstopGrace = 100 * time.Millisecond

// Spec describes one worker process to start under its guard.
type Spec struct {
	// Command is the worker's argv. Command[0] is looked up in the
	// worker's PATH by the guard. Required.
	Command []string
	// Env is the worker's (and its guard's) whole environment; nil means
	// the supervisor's own (os.Environ()).
	Env []string
	// Dir is the working directory; empty means the supervisor's.
	Dir string
	// Index is the worker's index in its pool, for logs and OutputLine.
	Index int
	// StopTimeout is how long Stop waits after SIGTERM before it SIGKILLs
	// the tree (the deadline always wins). Default DefaultStopTimeout.
	StopTimeout time.Duration
	// Deadline is when the guard kills the worker's tree unless
	// ExtendDeadline moves it. Required; Start refuses a deadline already
	// passed.
	Deadline time.Time
	// GuardExe is the executable run as the guard. Default /proc/self/exe:
	// the binary this process runs, even when a package upgrade has
	// replaced the file on disk since (a guard of another version would
	// not speak this supervisor's protocol). With GuardFile it only names
	// the guard (its argv[0], what ps shows).
	GuardExe string
	// GuardFile, if set, is the guard's executable, opened by the
	// supervisor (OpenExecutable, at its start): the guard is exec'd
	// through its own inherited descriptor of it (fd 6, -exe-fd), so that
	// it is the version the supervisor opened even after a package
	// upgrade replaced the file at GuardExe.
	GuardFile *os.File
	// HelperFile, if set, is an executable handed to the guard on fd 7
	// (-helper-fd) for its orphan hook (OrphanInfo.Helper), kept open for
	// the same reason: regent hands the lean guard its own binary, which
	// releases the term.
	HelperFile *os.File
	// Containment is how the kernel holds the worker's tree to its guard
	// (DetectContainment finds the best one allowed). Default
	// ContainmentNone.
	Containment Containment
	// BackstopGrace: a guard that has not ended its tree this long after
	// the deadline (or a Kill) is SIGKILLed by the supervisor side. Keep
	// it below the lease's fence margin, so that the backstop acts before
	// another replica may lead. Default DefaultBackstopGrace.
	BackstopGrace time.Duration
	// GuardArgs are the words between GuardExe and the guard's own flags.
	// nil means []string{"guard"}, the hidden `regent guard` subcommand;
	// the lean guard (cmd/regent-guard) takes none: []string{}.
	GuardArgs []string
	// GuardMeta is handed to the guard as -meta key=value flags and from
	// there to GuardConfig.OnOrphaned. It is visible in ps: no secrets.
	GuardMeta map[string]string
	// GroupLock, if set, is a lock file shared by the guards of one pool,
	// so that the orphan hook runs only once all of them are done.
	GroupLock string
	// Logger receives the process's log lines; it should already carry
	// the queue. Default: a null logger.
	Logger hclog.Logger
	// Reaper, if set, protects the guard from being reaped by it (needed
	// when the process is a subreaper or PID 1 and runs a Reaper).
	Reaper *Reaper
	// Output receives each line the worker writes. nil logs it at info
	// level as "worker output" with worker, pid, stream and line.
	Output func(OutputLine)
}

// withDefaults validates s and fills its defaults.
func (s Spec) withDefaults() (Spec, error) {
	if len(s.Command) == 0 || s.Command[0] == "" {
		return s, fmt.Errorf("%w: empty command", ErrInvalidSpec)
	}
	if s.Deadline.IsZero() {
		return s, fmt.Errorf("%w: no deadline", ErrInvalidSpec)
	}
	if s.StopTimeout <= 0 {
		s.StopTimeout = DefaultStopTimeout
	}
	if s.Containment == "" {
		s.Containment = ContainmentNone
	}
	if s.BackstopGrace <= 0 {
		s.BackstopGrace = DefaultBackstopGrace
	}
	if s.Logger == nil {
		s.Logger = hclog.NewNullLogger()
	}
	return s.guardDefaults(), nil
}

// guardDefaults fills the defaults of the fields that name the guard.
func (s Spec) guardDefaults() Spec {
	if s.GuardExe == "" {
		s.GuardExe = selfExe
	}
	if s.GuardArgs == nil {
		s.GuardArgs = []string{"guard"}
	}
	return s
}
