package worker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/regentd/regent/internal/boottime"
)

// Process is one worker running under its guard, seen from the supervisor.
// Its methods are safe for concurrent use.
type Process struct {
	spec     Spec
	log      hclog.Logger
	cmd      *exec.Cmd
	guardPID int
	pid      atomic.Int64
	stdout   *lineWriter
	stderr   *lineWriter

	pidKnown chan struct{} // closed once the pid is reported or the report pipe ends
	pidOnce  sync.Once
	done     chan struct{} // closed once the guard has exited

	mu        sync.Mutex
	ctl       *os.File // control pipe write end; nil once closed
	deadline  time.Time
	stopStart time.Time
	killAt    time.Time // when Kill was first asked; zero before
	status    ExitStatus
	report    *ExitStatus // the guard's exit report
	startErr  string
	hello     int  // the guard's protocol version, 0 before its hello
	backstop  bool // the supervisor side SIGKILLed the guard

	rearm chan struct{} // wakes the backstop after a deadline change or Kill
}

// Start starts spec.Command under a guard and returns once the guard has
// reported the worker's pid. If ctx is cancelled first, the tree is killed
// and Start returns ctx.Err() after the guard has exited. A command that
// cannot be started yields an error wrapping ErrStart, a deadline already
// passed one wrapping ErrDeadlinePassed.
func Start(ctx context.Context, spec Spec) (*Process, error) {
	return start(ctx, spec, nil)
}

// start is Start; spawned, if set, is called with the process as soon as
// the guard runs, before it has reported the worker's pid, so that the
// caller can send it deadlines (ExtendDeadline), Kill or Stop while it
// starts: a guard that starts slowly catches up with them before it starts
// the worker. If start then fails, the process handed to spawned is dead.
func start(ctx context.Context, spec Spec, spawned func(*Process)) (*Process, error) {
	spec, err := spec.withDefaults()
	if err != nil {
		return nil, err
	}
	if !boottime.Now().Before(spec.Deadline) {
		return nil, ErrDeadlinePassed
	}
	// The guard holds its pool's group lock from its fork: a guard forked
	// just before the supervisor died counts as a member of the pool, so
	// the last of the others does not release the term under it.
	var lock *os.File
	if spec.GroupLock != "" {
		if lock, err = lockGroup(spec.GroupLock, unix.LOCK_SH); err != nil {
			return nil, fmt.Errorf("%w: group lock: %v", ErrStart, err)
		}
		defer lock.Close() // the guard keeps its own descriptor
	}
	pp, err := openPipes()
	if err != nil {
		return nil, err
	}
	p := newProcess(spec, pp.ctlW)
	if err := p.startGuard(lock, pp); err != nil {
		return nil, err
	}

	reportDone := make(chan struct{})
	go p.readReports(pp.repR, reportDone) // ends at the report pipe's EOF
	go p.wait(pp.repR, reportDone)        // the only caller of cmd.Wait
	go p.runBackstop()                    // ends when done closes
	if spawned != nil {
		spawned(p)
	}
	return p.awaitPID(ctx)
}

// guardPipes are the guard's control pipe (the supervisor writes ctlW)
// and report pipe (the supervisor reads repR).
type guardPipes struct {
	ctlR, ctlW, repR, repW *os.File
}

func openPipes() (guardPipes, error) {
	var pp guardPipes
	var err error
	pp.ctlR, pp.ctlW, err = os.Pipe()
	if err != nil {
		return pp, fmt.Errorf("%w: control pipe: %v", ErrStart, err)
	}
	pp.repR, pp.repW, err = os.Pipe()
	if err != nil {
		pp.ctlR.Close()
		pp.ctlW.Close()
		return pp, fmt.Errorf("%w: report pipe: %v", ErrStart, err)
	}
	return pp, nil
}

// newProcess returns the Process of spec, writing its control lines to
// ctl, before its guard starts.
func newProcess(spec Spec, ctl *os.File) *Process {
	p := &Process{
		spec:     spec,
		log:      spec.Logger.With("worker", spec.Index),
		pidKnown: make(chan struct{}),
		done:     make(chan struct{}),
		ctl:      ctl,
		deadline: spec.Deadline,
		rearm:    make(chan struct{}, 1),
	}
	p.stdout = &lineWriter{emit: p.emitter("stdout")}
	p.stderr = &lineWriter{emit: p.emitter("stderr")}
	return p
}

// startGuard starts the guard process (protected from the orphan reaper,
// if any) with the pipes' child ends, which it then closes; if the guard
// does not start it closes the parent ends too.
func (p *Process) startGuard(lock *os.File, pp guardPipes) error {
	spec := p.spec
	cmd, fds := guardCommand(spec, pp.ctlR, pp.repW, lock)
	cmd.Args = append(cmd.Args, guardArgs(bootAt(spec.Deadline), spec.Containment, spec.GuardMeta, spec.GroupLock, fds, spec.Command)...)
	cmd.Env = spec.Env
	cmd.Dir = spec.Dir
	cmd.Stdout = p.stdout
	cmd.Stderr = p.stderr
	cmd.SysProcAttr = spec.Containment.sysProcAttr()
	cmd.WaitDelay = 2 * time.Second
	p.cmd = cmd
	var err error
	if spec.Reaper != nil {
		_, err = spec.Reaper.Protect(func() (int, error) {
			if err := cmd.Start(); err != nil {
				return 0, err
			}
			return cmd.Process.Pid, nil
		})
	} else {
		err = cmd.Start()
	}
	pp.ctlR.Close()
	pp.repW.Close()
	if err != nil {
		pp.ctlW.Close()
		pp.repR.Close()
		return fmt.Errorf("%w: guard %s: %v", ErrStart, spec.GuardExe, err)
	}
	p.guardPID = cmd.Process.Pid
	return nil
}

// awaitPID waits for the guard to report the worker's pid (or its
// failure to start it); if ctx ends first the guard is killed.
func (p *Process) awaitPID(ctx context.Context) (*Process, error) {
	select {
	case <-p.pidKnown:
	case <-ctx.Done():
		p.Kill()
		<-p.done
		return nil, ctx.Err()
	}
	if p.PID() == 0 {
		<-p.done
		return nil, p.startError()
	}
	p.log.Debug("guard reported worker pid", "pid", p.PID(), "guard_pid", p.guardPID)
	return p, nil
}

// guardCommand returns the command that runs spec's guard, up to its own
// GuardArgs, with its inherited descriptors (nil where absent): fd 3 the
// control pipe ctl, 4 the report pipe rep, 5 the held group lock, 6 the
// guard's executable (GuardFile, exec'd through it), 7 the helper
// (HelperFile); and the guard flags naming them.
func guardCommand(spec Spec, ctl, rep, lock *os.File) (*exec.Cmd, guardFDs) {
	var fds guardFDs
	files := []*os.File{ctl, rep}
	put := func(fd int, f *os.File) {
		for len(files) <= fd-3 {
			files = append(files, nil) // closed in the child
		}
		files[fd-3] = f
	}
	if lock != nil {
		put(guardLockFD, lock)
		fds.lock = guardLockFD
	}
	path, argv0 := spec.GuardExe, spec.GuardExe
	if spec.GuardFile != nil {
		put(guardExeFD, spec.GuardFile)
		fds.exe = guardExeFD
		path = fdPath(guardExeFD)
	}
	if spec.HelperFile != nil {
		put(guardHelperFD, spec.HelperFile)
		fds.helper = guardHelperFD
	}
	if argv0 == selfExe {
		// argv[0] names the binary for ps; the guard sets its comm to it
		// (exec of /proc/self/exe or /proc/self/fd/6 would show "exe" or
		// "6").
		if exe, err := os.Executable(); err == nil {
			argv0 = exe
		}
	}
	cmd := exec.Command(path, spec.GuardArgs...)
	cmd.Args[0] = argv0
	cmd.ExtraFiles = files
	return cmd, fds
}

// emitter returns the line handler of one stream.
func (p *Process) emitter(stream string) func(string) {
	return func(text string) {
		line := OutputLine{Index: p.spec.Index, PID: p.PID(), Stream: stream, Text: text}
		if p.spec.Output != nil {
			p.spec.Output(line)
			return
		}
		p.log.Info("worker output", "stream", stream, "pid", line.PID, "line", text)
	}
}

// startError explains why the guard exited without starting the worker.
func (p *Process) startError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case strings.HasPrefix(p.startErr, msgDeadlinePassedBeforeStart):
		return ErrDeadlinePassed
	case strings.HasPrefix(p.startErr, msgStoppedBeforeStart), strings.HasPrefix(p.startErr, msgOrphanedBeforeStart):
		return ErrStoppedBeforeStart
	}
	if p.startErr != "" {
		return fmt.Errorf("%w: %s", ErrStart, p.startErr)
	}
	return fmt.Errorf("%w: guard exited without starting the worker (%s)", ErrStart, p.cmd.ProcessState)
}

// readReports handles the guard's report lines until the pipe ends.
func (p *Process) readReports(r io.Reader, done chan<- struct{}) {
	defer close(done)
	defer p.pidOnce.Do(func() { close(p.pidKnown) })
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		verb, rest := splitMsg(sc.Text())
		switch verb {
		case msgHello:
			v, _ := strconv.Atoi(rest)
			p.mu.Lock()
			p.hello = v
			p.mu.Unlock()
		case msgPID:
			p.mu.Lock()
			hello := p.hello
			p.mu.Unlock()
			if hello != GuardProtocol {
				// A guard of another regent version (the binary replaced
				// under us, or GuardExe pointing elsewhere) would read our
				// lines its own way: it must not run a worker.
				p.mu.Lock()
				p.startErr = fmt.Sprintf("guard speaks protocol %d, the supervisor %d: the guard binary is another regent version; restart regent", hello, GuardProtocol)
				p.mu.Unlock()
				p.log.Error("guard protocol mismatch, killing it", "guard_protocol", hello, "protocol", GuardProtocol)
				p.killGuard()
				continue
			}
			if n, err := strconv.Atoi(rest); err == nil && n > 0 {
				p.pid.Store(int64(n))
				p.pidOnce.Do(func() { close(p.pidKnown) })
			}
		case msgFired:
			p.log.Warn("guard killing worker tree", "cause", rest, "pid", p.PID())
		case msgError:
			p.mu.Lock()
			p.startErr = rest
			p.mu.Unlock()
			if rest == msgStoppedBeforeStart {
				// The term ended (a handover, a fence) before the worker
				// started: nothing failed.
				p.log.Info("guard stopped before the worker started")
			} else {
				p.log.Error("guard failed", "error", rest)
			}
		case msgNote:
			p.log.Info("guard note", "note", rest, "pid", p.PID())
		case msgExit:
			es, err := parseExit(rest)
			if err != nil {
				p.log.Error("bad guard report", "error", err)
				continue
			}
			p.mu.Lock()
			p.report = &es
			p.mu.Unlock()
		}
	}
}

// wait reaps the guard, settles the exit status and closes done.
func (p *Process) wait(rep *os.File, reportDone <-chan struct{}) {
	werr := p.cmd.Wait()
	if p.spec.Reaper != nil {
		p.spec.Reaper.Release(p.guardPID)
	}
	t := time.NewTimer(2 * time.Second)
	select {
	case <-reportDone:
	case <-t.C:
		rep.Close() // unblocks the reader
		<-reportDone
	}
	t.Stop()
	rep.Close()
	p.stdout.Flush()
	p.stderr.Flush()

	p.mu.Lock()
	if p.report != nil {
		p.status = *p.report
	} else {
		p.status = ExitStatus{Code: -1, Cause: CauseGuardLost}
		if p.backstop {
			p.status.Cause = CauseBackstop
		}
		switch pid := p.PID(); {
		case pid > 0 && p.spec.Containment.namespaced():
			// The kernel ended the guard's namespace, worker and all,
			// before the guard could be reaped; the worker's pid may
			// already name another process: nothing to signal.
			p.log.Error("guard exited without report; its namespace is gone", "pid", pid,
				"guard_pid", p.guardPID, "guard_status", p.cmd.ProcessState.String(), "error", werr)
		case pid > 0:
			// The guard died without killing the tree (SIGKILLed?). The
			// worker itself got its death signal; the rest of its group
			// gets SIGKILL here. Descendants in other groups were
			// re-parented to the nearest subreaper.
			signalGroup(pid, unix.SIGKILL)
			p.log.Error("guard exited without report, killed worker group", "pid", pid,
				"guard_pid", p.guardPID, "guard_status", p.cmd.ProcessState.String(), "error", werr)
		}
	}
	if p.ctl != nil {
		p.ctl.Close()
		p.ctl = nil
	}
	p.mu.Unlock()
	close(p.done)
}

// sendLocked writes one control line. p.mu must be held. The write is
// bounded: a stuck guard must not freeze the supervisor.
func (p *Process) sendLocked(line string) error {
	if p.ctl == nil {
		return ErrExited
	}
	_ = p.ctl.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(p.ctl, line+"\n"); err != nil {
		if errors.Is(err, syscall.EPIPE) {
			return ErrExited // the guard is exiting; wait has not noticed yet
		}
		return fmt.Errorf("worker: write to guard: %w", err)
	}
	return nil
}

// ExtendDeadline moves the guard's deadline to t (usually later; an earlier
// t is obeyed too). It returns ErrExited once the guard has exited.
func (p *Process) ExtendDeadline(t time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	// The backstop follows the deadline the supervisor wants, even when
	// the guard cannot be told (a full pipe of a frozen guard).
	p.deadline = t
	p.wakeBackstop()
	if err := p.sendLocked(msgDeadline + " " + strconv.FormatInt(bootAt(t), 10)); err != nil {
		return err
	}
	return nil
}

// Deadline returns the deadline last given to the guard.
func (p *Process) Deadline() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.deadline
}

// Stop stops the worker and blocks until its whole tree is dead: SIGTERM
// to its process group, then SIGKILL to the tree after StopTimeout or at
// the deadline, whichever comes first. It is idempotent; concurrent calls
// all wait. If ctx ends first, the tree is SIGKILLed at once and Stop
// returns ctx.Err() without waiting.
func (p *Process) Stop(ctx context.Context) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	p.mu.Lock()
	if p.stopStart.IsZero() {
		p.stopStart = boottime.Now()
		_ = p.sendLocked(msgTerm)
	}
	killAt := p.stopStart.Add(p.spec.StopTimeout)
	if p.deadline.Before(killAt) {
		killAt = p.deadline
	}
	p.mu.Unlock()

	t := time.NewTimer(boottime.Until(killAt))
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
		p.Kill()
	case <-ctx.Done():
		p.Kill()
		return ctx.Err()
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Kill asks the guard to SIGKILL the worker's whole tree now and returns at
// once; Done is closed when the tree is dead. A guard that has not done it
// within BackstopGrace is itself SIGKILLed (see runBackstop). It is
// idempotent.
func (p *Process) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.killAt.IsZero() {
		p.killAt = boottime.Now()
		p.wakeBackstop()
	}
	_ = p.sendLocked(msgKill)
}

// wakeBackstop makes the backstop look at its trigger again.
func (p *Process) wakeBackstop() {
	select {
	case p.rearm <- struct{}{}:
	default:
	}
}

// killBackstopGrace is the backstop's grace after a Kill asked before the
// deadline.
const killBackstopGrace = time.Second

// backstopTick bounds how late the backstop notices its trigger after a
// host suspend (its timer counts CLOCK_MONOTONIC).
const backstopTick = 250 * time.Millisecond

// runBackstop is the supervisor's side of the dead-man's switch: the
// supervisor never waits without end on a guard that does not act (one
// frozen by SIGSTOP, stuck in uninterruptible I/O, a debugger attached).
// At the deadline plus BackstopGrace (or a second after a Kill asked
// earlier), if the guard has not
// exited, it SIGKILLs the guard; the containment takes everything below
// it, and without one the worker's group is killed when the guard is
// reaped (see wait). It returns when done closes.
func (p *Process) runBackstop() {
	t := time.NewTimer(backstopTick)
	defer t.Stop()
	for {
		p.mu.Lock()
		trigger := p.deadline.Add(p.spec.BackstopGrace)
		if !p.killAt.IsZero() {
			// Before the deadline a slow kill is no danger: a guard
			// killing a large tree on a loaded host gets longer.
			if k := p.killAt.Add(max(p.spec.BackstopGrace, killBackstopGrace)); k.Before(trigger) {
				trigger = k
			}
		}
		p.mu.Unlock()
		left := boottime.Until(trigger)
		if left <= 0 {
			p.mu.Lock()
			p.backstop = true
			p.mu.Unlock()
			p.log.Error("guard did not end its worker in time, killing the guard",
				"guard_pid", p.guardPID, "pid", p.PID(), "grace", p.spec.BackstopGrace)
			p.killGuard()
			<-p.done
			return
		}
		t.Reset(min(left, backstopTick))
		select {
		case <-p.done:
			return
		case <-p.rearm:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		case <-t.C:
		}
	}
}

// killGuard SIGKILLs the guard. os.Process signals through a pidfd, and
// the guard is not reaped before done closes, so this never hits another
// process.
func (p *Process) killGuard() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
}

// Done is closed once the guard has exited, which it does only after every
// process of the worker's tree is dead and reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitStatus returns how the worker ended; valid once Done is closed.
func (p *Process) ExitStatus() ExitStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// PID returns the worker's pid (the leader of its process group).
func (p *Process) PID() int { return int(p.pid.Load()) }

// GuardPID returns the guard's pid: the root of the worker's tree.
func (p *Process) GuardPID() int { return p.guardPID }

// abandon closes the control pipe without a word, as the death of the
// supervisor would. For tests.
func (p *Process) abandon() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctl != nil {
		p.ctl.Close()
		p.ctl = nil
	}
}
