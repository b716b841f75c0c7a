package worker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// GuardConfig configures RunGuard.
type GuardConfig struct {
	// OnOrphaned, if set, runs after every process of the worker's tree is
	// dead and reaped, when the guard killed them because its control pipe
	// hit EOF (the supervisor died). With -group-lock it runs only in the
	// guard that finds every other guard of its pool gone. This is the seam
	// through which cmd/ releases the term in the backend, so that the next
	// leader need not wait out the lease. It is not called when the worker
	// ended otherwise.
	OnOrphaned func(ctx context.Context, info OrphanInfo) error
	// OrphanTimeout bounds OnOrphaned through its context. Default 10s.
	OrphanTimeout time.Duration
	// Stderr receives usage errors. Default os.Stderr.
	Stderr io.Writer
}

// OrphanInfo is handed to GuardConfig.OnOrphaned.
type OrphanInfo struct {
	// Meta holds the -meta key=value flags of the guard (Spec.GuardMeta).
	Meta map[string]string
	// WorkerPID is the pid the worker had.
	WorkerPID int
	// Exit is how the worker ended.
	Exit ExitStatus
	// Helper is the executable the supervisor handed to the guard
	// (Spec.HelperFile), open: run it with FileCommand. nil without one.
	Helper *os.File
}

// GuardMain is the one-call entry point of the hidden `regent guard`
// subcommand: args are the words after "guard" ([flags] -- command args...).
// It returns the process exit code: the worker's exit code, 128+signal when
// the worker was killed by a signal, GuardExitError or GuardExitNotStarted
// when the guard itself failed.
func GuardMain(args []string) int { return RunGuard(args, GuardConfig{}) }

// RunGuard is GuardMain with options. It expects the control pipe's read
// end on fd 3 and, optionally, the report pipe's write end on fd 4, as
// Start arranges. It blocks until every process of the worker's tree is
// dead and reaped.
func RunGuard(args []string, cfg GuardConfig) int {
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	if cfg.OrphanTimeout <= 0 {
		cfg.OrphanTimeout = 10 * time.Second
	}
	opts, err := parseGuardArgs(args, cfg.Stderr)
	if err != nil {
		fmt.Fprintln(cfg.Stderr, err)
		return GuardExitError
	}
	if opts.exeFD > 0 {
		// Only the exec needed it; the worker must not inherit it.
		_ = unix.Close(opts.exeFD)
	}
	if len(os.Args) > 0 {
		// Run from /proc/self/exe (or /proc/self/fd/6) the guard's comm
		// is "exe" (or "6"): name it as its binary, so that ps and pkill
		// see a regent process.
		// (/proc/self/comm is the main thread's; prctl would name only
		// the calling one.)
		name := filepath.Base(strings.TrimSuffix(os.Args[0], " (deleted)"))
		_ = os.WriteFile("/proc/self/comm", []byte(name), 0)
	}
	if opts.probe {
		if opts.containment.namespaced() && os.Getpid() != 1 {
			fmt.Fprintf(cfg.Stderr, "regent guard: probe: pid %d, not a namespace's init\n", os.Getpid())
			return GuardExitError
		}
		return 0
	}
	testStartDelay(cfg.Stderr)
	ctl, err := openGuardFD(guardControlFD, "regent-control")
	if err != nil {
		fmt.Fprintf(cfg.Stderr, "regent guard: no control pipe on fd %d: %v\n", guardControlFD, err)
		return GuardExitError
	}
	report, err := openGuardFD(guardReportFD, "regent-report")
	if err != nil {
		report = nil // the report pipe is optional
	}
	g := &guard{cfg: cfg, opts: opts, report: report, self: os.Getpid()}
	if fd := opts.helperFD; fd > 0 {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
			unix.CloseOnExec(fd) // for the orphan hook only, not the worker
			g.helper = os.NewFile(uintptr(fd), "regent-helper")
			defer g.helper.Close()
		}
	}
	defer func() {
		if report != nil {
			report.Close()
		}
	}()
	return g.run(ctl)
}

// EnvTestStartDelay is a test-only seam: a Go duration the guard sleeps
// right after parsing its arguments, before it touches its group lock or
// its control pipe, as a slow exec on a loaded host would delay it
// (integration/latestart_test.go: a guard that starts after its
// supervisor died). Its GuardEnvPrefix keeps it from the worker. Never set
// it in production.
const EnvTestStartDelay = GuardEnvPrefix + "TEST_START_DELAY"

// testStartDelay sleeps for EnvTestStartDelay, if it is set.
func testStartDelay(stderr io.Writer) {
	v := os.Getenv(EnvTestStartDelay)
	if v == "" {
		return
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		fmt.Fprintf(stderr, "regent guard: ignoring %s=%q: %v\n", EnvTestStartDelay, v, err)
		return
	}
	time.Sleep(d) // the seam: a guard that starts late
}

// openGuardFD wraps an inherited descriptor. It is made close-on-exec, so
// the worker never inherits it (a worker holding the report pipe would hide
// the guard's exit), and non-blocking, so reads can be interrupted by Close
// and writes bounded by a deadline.
func openGuardFD(fd int, name string) (*os.File, error) {
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
		return nil, err
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

// guard is one running guard process.
type guard struct {
	cfg    GuardConfig
	opts   guardOptions
	report *os.File // nil when there is no report pipe
	helper *os.File // nil when there is no helper executable
	self   int
	lock   *os.File // the held group lock; nil without one or once dropped
}

// say writes one report line. It never blocks for long: a frozen
// supervisor must not keep the guard from enforcing its deadline.
func (g *guard) say(verb string, args ...any) {
	if g.report == nil {
		return
	}
	var b strings.Builder
	b.WriteString(verb)
	for _, a := range args {
		b.WriteByte(' ')
		b.WriteString(strings.ReplaceAll(fmt.Sprint(a), "\n", " "))
	}
	b.WriteByte('\n')
	_ = g.report.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = io.WriteString(g.report, b.String())
}

// run starts the worker and enforces the deadline until the tree is dead.
func (g *guard) run(ctl *os.File) int {
	// The control reader goroutine is stopped by closing ctl; its end is
	// awaited before run returns.
	var readers sync.WaitGroup
	stopRead := make(chan struct{})
	defer func() {
		close(stopRead)
		ctl.Close()
		readers.Wait()
	}()
	sigs, code := g.setUp()
	if code != 0 {
		return code
	}
	defer signal.Stop(sigs)
	defer g.dropLock()
	path, err := exec.LookPath(g.opts.argv[0])
	if err != nil {
		g.say(msgError, err.Error())
		return GuardExitNotStarted
	}
	deadline := g.opts.deadline
	early, leftover, code := g.catchUp(ctl, &deadline)
	if code != 0 {
		return code
	}
	t, code := g.startWorker(path, deadline)
	if code != 0 {
		return code
	}
	defer t.close()

	reaped := make(chan reapedChild, 16)
	go reapChildren(reaped) // ends once the guard has no child left
	ctlMsgs := make(chan ctlMsg)
	ctlEOF := make(chan struct{})
	readers.Add(1)
	go func() {
		defer readers.Done()
		readControl(ctl, leftover, ctlMsgs, ctlEOF, stopRead)
	}()
	if early {
		g.say(msgNote, "deadline on argv passed before start; started with a newer one from the control pipe")
	}
	es := t.supervise(reaped, ctlMsgs, ctlEOF, sigs)
	g.say(formatExit(es))
	if t.orphaned && g.cfg.OnOrphaned != nil {
		g.dropLock() // the shared lock goes before asking for it exclusively
		g.runOrphanHook(t.reported, es)
	}
	return es.GuardCode()
}

// setUp says hello, checks the containment, makes the guard a subreaper,
// catches the stop signals (the supervisor owns stopping) and takes the
// pool's group lock. code is non-zero when the guard cannot work.
func (g *guard) setUp() (sigs chan os.Signal, code int) {
	g.say(msgHello, GuardProtocol)
	if g.opts.containment.namespaced() && g.self != 1 {
		g.say(msgError, fmt.Sprintf("containment %s: the guard is pid %d, not its namespace's init", g.opts.containment, g.self))
		return nil, GuardExitError
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		g.say(msgError, "set child subreaper: "+err.Error())
		return nil, GuardExitError
	}
	// Signals sent to the guard are logged and ignored. Notify, not
	// Ignore: an ignored disposition would be inherited by the worker
	// through exec.
	sigs = make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT)
	lock, err := g.takeGroupLock()
	if err != nil {
		signal.Stop(sigs)
		g.say(msgError, "group lock: "+err.Error())
		return nil, GuardExitError
	}
	g.lock = lock
	return sigs, 0
}

// dropLock releases the guard's hold on its pool's group lock.
func (g *guard) dropLock() {
	if g.lock != nil {
		g.lock.Close()
		g.lock = nil
	}
}

// catchUp takes in the control lines queued while the guard started. The
// deadline on argv may be stale: on a loaded host the guard can start
// after it, while the supervisor has renewed since and queued newer
// deadlines. The safety rule is unchanged: no start past the newest
// deadline the guard knows, nor after a stop or the supervisor's end.
// code is non-zero when the worker must not start.
func (g *guard) catchUp(ctl *os.File, deadline *int64) (early bool, leftover []byte, code int) {
	early, leftover, stopped, eof := catchUpControl(ctl, deadline)
	switch {
	case eof:
		// The supervisor died before this worker started: its term may
		// already be released (this guard held the pool's lock since its
		// fork, so it is the last one if the others are gone). Never
		// start; release the term if this is the last guard.
		g.say(msgError, msgOrphanedBeforeStart)
		if g.cfg.OnOrphaned != nil {
			g.dropLock()
			g.runOrphanHook(0, ExitStatus{Code: -1, Cause: CauseOrphaned})
		}
		return false, nil, GuardExitError
	case stopped:
		g.say(msgError, msgStoppedBeforeStart)
		return false, nil, GuardExitError
	case bootNow() >= *deadline:
		g.say(msgError, msgDeadlinePassedBeforeStart)
		return false, nil, GuardExitError
	}
	return early, leftover, 0
}

// startWorker arms the deadline timer, forks the worker and reports its
// pid as the supervisor numbers it. code is non-zero when it failed.
func (g *guard) startWorker(path string, deadline int64) (*tree, int) {
	timer, err := newBootTimer(deadline)
	if err != nil {
		g.say(msgError, "deadline timer: "+err.Error())
		return nil, GuardExitError
	}
	pid, release, err := forkWorker(path, g.opts.argv)
	if err != nil {
		timer.Stop()
		g.say(msgError, "exec "+path+": "+err.Error())
		return nil, GuardExitNotStarted
	}
	t := &tree{g: g, pid: pid, reported: pid, deadline: deadline, timer: timer, release: release}
	if g.opts.containment.namespaced() {
		// pid is numbered in the guard's namespace; the supervisor needs
		// the host's number.
		if t.reported, err = hostPIDOf(pid); err != nil {
			killNamespace()
			g.say(msgError, "worker's host pid: "+err.Error())
			t.reported = 0
		}
	}
	if t.reported > 0 {
		g.say(msgPID, t.reported)
	} else {
		t.kill(CauseKilled)
	}
	return t, 0
}

// tree is the worker's process tree as its guard enforces it.
type tree struct {
	g        *guard
	pid      int // the worker, as the guard numbers it
	reported int // the worker, as the supervisor numbers it (0: unknown)
	deadline int64
	timer    *bootTimer
	release  func()

	status   *unix.WaitStatus // the worker's, once reaped
	cause    Cause
	killed   bool
	orphaned bool
}

// close stops the timer and lets the worker's forking thread go.
func (t *tree) close() {
	t.timer.Stop()
	t.release()
}

// killRest SIGKILLs the whole tree.
func (t *tree) killRest() {
	if t.g.opts.containment.namespaced() {
		// The kernel's own list: every process of the namespace,
		// whatever group or session it moved to.
		killNamespace()
		return
	}
	killTree(t.g.self, t.pid)
}

// kill kills the tree once, for cause c.
func (t *tree) kill(c Cause) {
	if t.killed {
		return
	}
	t.killed = true
	if t.status == nil {
		t.cause = c
		t.g.say(msgFired, c)
	}
	t.killRest()
}

// supervise enforces the deadline and the supervisor's commands until
// every child is reaped, and returns how the worker ended.
func (t *tree) supervise(reaped <-chan reapedChild, ctlMsgs <-chan ctlMsg, ctlEOF <-chan struct{}, sigs <-chan os.Signal) ExitStatus {
	for reaped != nil {
		select {
		case m := <-ctlMsgs:
			t.control(m)
		case <-ctlEOF:
			ctlEOF = nil
			if t.status == nil && !t.killed {
				t.orphaned = true
				t.kill(CauseOrphaned)
			}
		case <-t.timer.C:
			if !t.killed && bootNow() >= t.deadline {
				t.kill(CauseDeadline)
			}
		case r, ok := <-reaped:
			if !ok {
				reaped = nil
				continue
			}
			t.reap(r)
		case s := <-sigs:
			t.g.say(msgNote, "ignoring signal "+s.String())
		}
	}
	if t.status == nil {
		return ExitStatus{Code: -1, Cause: t.cause}
	}
	return exitStatusOf(*t.status, t.cause)
}

// control obeys one control line.
func (t *tree) control(m ctlMsg) {
	switch m.verb {
	case msgDeadline:
		if t.killed {
			return
		}
		t.deadline = m.at
		if err := t.timer.Set(t.deadline); err != nil {
			t.kill(CauseDeadline) // no timer, no trust
		}
	case msgTerm:
		if t.status == nil && !t.killed {
			signalGroup(t.pid, unix.SIGTERM)
		}
	case msgKill:
		t.kill(CauseKilled)
	}
}

// reap accounts for one reaped child: the worker's end takes the rest of
// its tree with it.
func (t *tree) reap(r reapedChild) {
	if r.pid == t.pid && t.status == nil {
		ws := r.status
		t.status = &ws
		if t.cause == "" {
			t.cause = CauseExited
		}
		// Leftover members of the group and orphaned descendants die
		// with the worker.
		if !t.killed {
			t.killed = true
			t.killRest()
		}
		return
	}
	if t.killed && t.g.opts.containment.namespaced() {
		// A process forked while the namespace was being killed: kill
		// again until none is left.
		killNamespace()
	}
}

// takeGroupLock returns the guard's hold on its pool's group lock: the
// descriptor inherited from the supervisor, which took it shared before
// the fork (so the guard is counted from that moment), or else the lock
// taken here. nil without a group lock.
func (g *guard) takeGroupLock() (*os.File, error) {
	if g.opts.groupLockFD > 0 {
		fd := g.opts.groupLockFD
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			return nil, fmt.Errorf("inherited descriptor %d: %w", fd, err)
		}
		unix.CloseOnExec(fd) // the worker must not hold it
		return os.NewFile(uintptr(fd), "regent-group-lock"), nil
	}
	if g.opts.groupLock == "" {
		return nil, nil
	}
	return lockGroup(g.opts.groupLock, unix.LOCK_SH)
}

// runOrphanHook runs OnOrphaned if this guard is the last of its pool.
func (g *guard) runOrphanHook(pid int, es ExitStatus) {
	if g.opts.groupLock != "" {
		excl, err := lockGroup(g.opts.groupLock, unix.LOCK_EX|unix.LOCK_NB)
		if err != nil {
			g.say(msgNote, "orphan hook left to another guard of the pool")
			return
		}
		defer excl.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.OrphanTimeout)
	defer cancel()
	err := g.cfg.OnOrphaned(ctx, OrphanInfo{Meta: g.opts.meta, WorkerPID: pid, Exit: es, Helper: g.helper})
	if err != nil {
		g.say(msgNote, "orphan hook failed: "+err.Error())
		return
	}
	g.say(msgNote, "orphan hook done")
}

// exitStatusOf converts a wait status.
func exitStatusOf(ws unix.WaitStatus, cause Cause) ExitStatus {
	switch {
	case ws.Exited():
		return ExitStatus{Code: ws.ExitStatus(), Cause: cause}
	case ws.Signaled():
		return ExitStatus{Code: -1, Signal: ws.Signal(), Cause: cause}
	default:
		return ExitStatus{Code: -1, Cause: cause}
	}
}

// catchUpControl reads, without waiting, every control line already
// queued on f before the worker starts, and applies it: a deadline line
// replaces *deadline (the newest one wins, later or earlier); a term or
// kill line means the supervisor no longer wants this worker, and stopped
// is true. It stops at the first read that would block, or at EOF or an
// error, which it reports in eof: the supervisor is gone, and the guard
// must not start a worker for a term that may already be released. leftover is an
// incomplete last line, for readControl to continue. early reports whether
// the deadline on argv had passed and a queued one replaced it.
func catchUpControl(f *os.File, deadline *int64) (early bool, leftover []byte, stopped, eof bool) {
	initial := *deadline
	var buf []byte
	chunk := make([]byte, 4096)
	rc, err := f.SyscallConn()
	if err != nil {
		return false, nil, false, true
	}
	for {
		var n int
		var rerr error
		// The callback returns true: one non-blocking read, never a
		// wait for the poller.
		if err := rc.Read(func(fd uintptr) bool {
			n, rerr = unix.Read(int(fd), chunk)
			return true
		}); err != nil || rerr != nil || n <= 0 {
			// EAGAIN: nothing more queued. EOF or another error: the
			// supervisor is gone (or never was), and no renewal can come.
			eof = (err == nil && rerr == nil && n == 0) || (rerr != nil && rerr != unix.EAGAIN && rerr != unix.EINTR)
			break
		}
		buf = append(buf, chunk[:n]...)
		for {
			i := bytes.IndexByte(buf, '\n')
			if i < 0 {
				break
			}
			m := parseControl(buf[:i])
			buf = buf[i+1:]
			switch m.verb {
			case msgDeadline:
				*deadline = m.at
			case msgTerm, msgKill:
				stopped = true
			}
		}
	}
	early = bootNow() >= initial && *deadline != initial
	return early, buf, stopped, eof
}

// ctlMsg is one control line, parsed.
type ctlMsg struct {
	verb string // msgDeadline, msgTerm, msgKill; "" for a line the guard ignores
	at   int64  // a deadline line's instant (CLOCK_BOOTTIME ns)
}

// parseControl parses one control line (without its newline). It does not
// allocate: a guard lives as long as its worker and reads a renewal every
// few seconds, and garbage would grow its heap until a GC, for days.
func parseControl(line []byte) ctlMsg {
	verb, rest, _ := bytes.Cut(bytes.TrimRight(line, "\r"), []byte{' '})
	switch string(verb) {
	case msgDeadline:
		n, err := strconv.ParseInt(string(rest), 10, 64)
		if err != nil {
			return ctlMsg{}
		}
		return ctlMsg{verb: msgDeadline, at: n}
	case msgTerm:
		return ctlMsg{verb: msgTerm}
	case msgKill:
		return ctlMsg{verb: msgKill}
	}
	return ctlMsg{}
}

// maxControlLine bounds a control line; a longer one is dropped.
const maxControlLine = 4096

// readControl sends each control line, parsed, to msgs and closes eof
// when the pipe ends (EOF, or an error: either way no renewal can come
// any more). pending holds bytes already read (an incomplete line). It
// returns early when stop is closed. Its buffer is fixed: reading
// allocates nothing.
func readControl(f *os.File, pending []byte, msgs chan<- ctlMsg, eof chan<- struct{}, stop <-chan struct{}) {
	defer close(eof)
	buf := make([]byte, 0, 2*maxControlLine)
	if len(pending) > maxControlLine {
		pending = nil // a runaway line: drop it
	}
	buf = append(buf, pending...)
	for {
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		line := buf
		for {
			i := bytes.IndexByte(line, '\n')
			if i < 0 {
				break
			}
			m := parseControl(line[:i])
			line = line[i+1:]
			if m.verb == "" {
				continue
			}
			select {
			case msgs <- m:
			case <-stop:
				return
			}
		}
		buf = buf[:copy(buf, line)]
		if len(buf) > maxControlLine {
			buf = buf[:0] // a runaway line: drop it
		}
		if err != nil {
			return
		}
	}
}

// lockGroup opens path and flocks it with how.
func lockGroup(path string, how int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
