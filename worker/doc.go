// Package worker runs a queue's worker processes for the leader: each
// worker under a guard (the dead-man's switch), restarted with backoff,
// watched for memory (RSS) and for silence (wedge), stopped with SIGTERM
// then SIGKILL, and never alive past the leadership deadline. It knows
// nothing of backends or elections: callers hand it deadlines.
//
// # The guard
//
// Every worker runs under a guard, a process of its own that runs
// RunGuard: `[GuardArgs] [flags] -- command args...`. regent ships a lean
// guard, cmd/regent-guard, that links this package and nothing of the
// backends (about 1 MB of anonymous memory per worker against 5 MB, and
// a quarter of the start time); without it, the regent binary re-executed as
// `regent guard` (from /proc/self/exe). Either way the guard is the
// version the supervisor opened, even after a package upgrade replaced
// the files on disk: /proc/self/exe is the running binary, and the lean
// guard is opened by the supervisor at its start (OpenExecutable,
// Spec.GuardFile) and exec'd through the child's own descriptor of it
// (fd 6, /proc/self/fd/6, resolved in the forked child, in its new PID
// and user namespace too; the guard closes it at once). The supervisor
// (Start) gives the guard two pipes: fd 3, the read end of a control pipe,
// and fd 4, the write end of a report pipe, and, with a group lock, fd 5:
// the pool's lock file, already locked shared; and, with Spec.HelperFile,
// fd 7: an executable for the orphan hook (OrphanInfo.Helper; regent
// hands the lean guard its own binary, the version it runs, which
// releases the term). ProbeGuard runs a guard once at the supervisor's
// start, to find a guard binary that cannot run or speaks another
// protocol there rather than at every worker. Pipes carry text lines (see
// protocol.go):
//
//	supervisor → guard: deadline <CLOCK_BOOTTIME ns> | term | kill
//	guard → supervisor: hello <version> | pid <n> | fired <cause> | error <text> | note <text> | exit <code> <signal> <cause>
//
// The guard refuses flags of another protocol version (-protocol), and
// the supervisor a guard whose hello names another. Deadlines are
// absolute CLOCK_BOOTTIME instants: both processes share that clock, it
// does not jump with the wall clock, and it counts time the host spent
// suspended (the guard waits on a CLOCK_BOOTTIME timerfd, so a deadline
// that passed during a suspend fires at resume). The guard:
//
//   - with a containment (Spec.Containment, DetectContainment), is the
//     init (PID 1) of a new PID namespace (inside a new user namespace
//     when regent is unprivileged) that holds its worker and everything
//     the worker starts: when the guard dies, however it dies, the kernel
//     SIGKILLs the whole namespace. It kills its tree with kill(-1), and
//     reports the worker's pid as the supervisor numbers it (NSpid);
//   - counts as a member of its pool from its fork: the supervisor takes
//     the pool's group lock shared for it before the fork (fd 5);
//   - makes itself a child subreaper, so every descendant of the worker,
//     orphaned or not, stays below it;
//   - runs in its own process group (a terminal's SIGINT to the
//     supervisor's group does not reach it) and ignores SIGTERM, SIGINT,
//     SIGHUP and SIGQUIT: the supervisor owns stopping. They are caught,
//     not set to SIG_IGN, which the worker would inherit through exec;
//   - before it starts the worker, reads the control lines already queued
//     (without waiting): the supervisor may have renewed while the guard
//     was being started, and the newest deadline is the one that counts;
//     it refuses to start the worker if that deadline has already passed,
//     if a term or kill line was queued, or if the pipe is already at EOF
//     (the supervisor died: its term may already be released; the guard
//     then runs the orphan hook if it is the last of its pool);
//   - starts the worker in a process group of its own, with the guard's
//     environment, directory and stdio, and PR_SET_PDEATHSIG=SIGKILL, so
//     that a guard killed outright takes the worker with it;
//   - on `term` sends SIGTERM (then SIGCONT) to the worker's group;
//   - on `kill`, at the deadline, or when the control pipe hits EOF (the
//     supervisor died, or was SIGKILLed), SIGKILLs the worker's group and
//     every live descendant it finds in /proc, again and again until none
//     is left. Descendants are signalled through pidfds after checking
//     their start time, so a reused pid is never hit;
//   - when the worker exits by itself, kills what is left of its tree the
//     same way;
//   - reaps every child, reports `exit`, and exits only once the whole
//     tree is dead, with the worker's exit code, 128+signal if a signal
//     killed it, GuardExitError (125) if the guard could not work (bad
//     flags, no control pipe, deadline passed) or GuardExitNotStarted
//     (127) if the command could not be executed.
//
// A frozen (SIGSTOP) supervisor therefore leaves no worker running past
// its deadline, and a dead one none at all. When the control pipe hit EOF
// the guard then runs GuardConfig.OnOrphaned, the seam through which cmd/
// releases the term in the backend. The guards of one pool share a lock
// file (-group-lock): each holds it shared while it runs and the hook runs
// only in a guard that then gets it exclusively, so only after every guard
// of the pool has killed its tree. -meta key=value flags carry what the
// hook needs (queue, term; never secrets: argv is public). The lean guard
// links no backend: its hook runs `regent release-term` from the helper
// (FileCommand), which reads the backend settings from the environment,
// bounded by GuardConfig.OrphanTimeout.
//
// If the guard dies without its exit report (it was SIGKILLed), the
// supervisor side SIGKILLs the worker's process group as a fallback and
// reports CauseGuardLost. And the supervisor never waits without end on a
// guard that does not act (frozen, stuck in uninterruptible I/O): at the
// deadline plus Spec.BackstopGrace (or a second after a Kill), a guard
// still running is SIGKILLed through its pidfd (CauseBackstop); the
// containment takes everything below it.
//
// EnvTestStartDelay (REGENT_GUARD_TEST_START_DELAY) is a test-only seam:
// the guard sleeps that long before it looks at its lock or its pipe, as
// a slow exec on a loaded host would (integration/latestart_test.go).
//
// # Process
//
// Start runs one worker under its guard and returns once the guard has
// reported the worker's pid. Exactly one goroutine waits for the guard;
// another reads its reports; the worker's stdout and stderr are forwarded
// line by line (Spec.Output, or the logger with worker, pid, stream).
// Stop is SIGTERM, then SIGKILL after StopTimeout or at the deadline,
// whichever is first, and blocks until the tree is dead; Kill is
// immediate. Done is closed only when the guard has exited, that is when
// the tree is dead and reaped.
//
// # Pool
//
// A Pool runs Concurrency slots for one leadership term. Each slot loops:
//
//	waiting (deadline passed, or fenced) → starting → running → [stopping] → backoff → …
//
// and ends in stopped when Run's context ends. Invariants:
//
//   - no worker is started with a deadline that has passed; a worker
//     killed at its deadline (or by Fence) is not a crash and is not
//     started again until ExtendDeadline moves the deadline (never, after
//     Fence);
//   - every guard has the latest deadline: ExtendDeadline and the
//     registration of a new process are serialized, and a process is
//     registered as soon as its guard is spawned, so that the renewals
//     made while a slow guard starts are queued on its control pipe;
//   - Run returns only when every worker's tree is dead; stopping uses a
//     fresh context (context.WithoutCancel), SIGTERM, StopTimeout, SIGKILL,
//     and never ends later than the deadline (the guards enforce it);
//   - a crash is an exit that is not code 0 and that the pool did not
//     cause. The n-th consecutive crash waits Backoff(policy, n): 1s
//     doubling to a 60s cap, minus up to 10% jitter (subtracted, so the
//     cap holds). A run of ResetAfter (5m) forgets earlier crashes. From
//     MaxCrashes (10) consecutive crashes on, the worker is degraded
//     (status, EventDegraded) and retried at the cap. A failed start
//     counts as a crash. Exit 0 is not a crash; the worker is started
//     again after InitialBackoff so that it cannot spin;
//   - RSS watchdog (MaxRSSMB > 0): every CheckInterval the RSS of the
//     worker's whole tree (every live descendant of its guard, from
//     /proc) is sampled; a warning is logged once per run at 80%; over
//     the limit the worker is stopped (SIGTERM, StopTimeout, SIGKILL) and
//     started again at once, not counted as a crash. More than 3 such
//     kills within 10 minutes is a loop: reported (status RSSLoop,
//     EventRSSLoop) and restarts after a loop kill wait InitialBackoff;
//   - wedge detection (Liveness.HeartbeatTimeout > 0): the worker gets
//     REGENT_HEARTBEAT_FILE and must touch it. Once StartupGrace has passed
//     since the start, a silence (from the later of the last touch and the
//     start) longer than HeartbeatTimeout restarts it, not counted as a
//     crash, at most 3 times in 30 minutes; past that it is only reported
//     (status Wedged, EventWedged) and left running.
//
// Every worker gets REGENT_WORKER (its index) added to its environment,
// after Spec.Env and EnvFor, which carry REGENT_CLUSTER, REGENT_QUEUE,
// REGENT_NODE, REGENT_TERM, REGENT_FENCE_KEY and REGENT_FENCE_OWNER from
// the supervisor.
//
// # Subreaper
//
// SetChildSubreaper makes regent itself a subreaper; a Reaper then reaps
// the orphans that come to it (and, as PID 1 in a container, every
// orphan), leaving the guards it started (Spec.Reaper) to their own Wait.
package worker
