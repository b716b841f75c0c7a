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
	status    ExitStatus
	report    *ExitStatus // the guard's exit report
	startErr  string
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
	if !time.Now().Before(spec.Deadline) {
		return nil, ErrDeadlinePassed
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%w: control pipe: %v", ErrStart, err)
	}
	repR, repW, err := os.Pipe()
	if err != nil {
		ctlR.Close()
		ctlW.Close()
		return nil, fmt.Errorf("%w: report pipe: %v", ErrStart, err)
	}
	p := &Process{
		spec:     spec,
		log:      spec.Logger.With("worker", spec.Index),
		pidKnown: make(chan struct{}),
		done:     make(chan struct{}),
		ctl:      ctlW,
		deadline: spec.Deadline,
	}
	p.stdout = &lineWriter{emit: p.emitter("stdout")}
	p.stderr = &lineWriter{emit: p.emitter("stderr")}

	args := append(append([]string{}, spec.GuardArgs...),
		guardArgs(monoAt(spec.Deadline), spec.GuardMeta, spec.GroupLock, spec.Command)...)
	cmd := exec.Command(spec.GuardExe, args...)
	cmd.Env = spec.Env
	cmd.Dir = spec.Dir
	cmd.Stdout = p.stdout
	cmd.Stderr = p.stderr
	cmd.ExtraFiles = []*os.File{ctlR, repW} // fds 3 and 4 of the guard
	// The guard gets its own process group: a terminal's SIGINT to the
	// supervisor's group must not reach it; the supervisor owns stopping.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 2 * time.Second
	p.cmd = cmd
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
	ctlR.Close()
	repW.Close()
	if err != nil {
		ctlW.Close()
		repR.Close()
		return nil, fmt.Errorf("%w: guard %s: %v", ErrStart, spec.GuardExe, err)
	}
	p.guardPID = cmd.Process.Pid

	reportDone := make(chan struct{})
	go p.readReports(repR, reportDone) // ends at the report pipe's EOF
	go p.wait(repR, reportDone)        // the only caller of cmd.Wait
	if spawned != nil {
		spawned(p)
	}

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
	case strings.HasPrefix(p.startErr, msgStoppedBeforeStart):
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
		case msgPID:
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
		if pid := p.PID(); pid > 0 {
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
	if err := p.sendLocked(msgDeadline + " " + strconv.FormatInt(monoAt(t), 10)); err != nil {
		return err
	}
	p.deadline = t
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
		p.stopStart = time.Now()
		_ = p.sendLocked(msgTerm)
	}
	killAt := p.stopStart.Add(p.spec.StopTimeout)
	if p.deadline.Before(killAt) {
		killAt = p.deadline
	}
	p.mu.Unlock()

	t := time.NewTimer(time.Until(killAt))
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
// once; Done is closed when the tree is dead. It is idempotent.
func (p *Process) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.sendLocked(msgKill)
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
