package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopGrace bounds how long a graceful stop waits before SIGKILL.
const stopGrace = 20 * time.Second

// child is one server process. Exactly one goroutine (started by start)
// calls Wait; it ends when the process exits, which kill guarantees.
type child struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed once Wait has returned
	err     error         // Wait's result, set before done is closed
}

// startChild starts cmd. If logPath is not empty, stdout and stderr (those
// not already set) are appended to it. deathSig is sent by the kernel to
// the process when the test binary dies (0 for none).
func startChild(name string, cmd *exec.Cmd, logPath string, deathSig syscall.Signal) (*child, error) {
	if logPath != "" {
		logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("testenv: %s log: %w", name, err)
		}
		defer logFile.Close() // the child has its own copy
		if cmd.Stdout == nil {
			cmd.Stdout = logFile
		}
		if cmd.Stderr == nil {
			cmd.Stderr = logFile
		}
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = deathSig
	// Its own process group: a ^C to the test does not reach it first.
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testenv: start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// pid returns the process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// exited reports whether the process has ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process, if it still runs.
func (c *child) signal(sig syscall.Signal) {
	if !c.exited() {
		_ = c.cmd.Process.Signal(sig)
	}
}

// kill sends SIGKILL and waits for the process to end. Idempotent.
func (c *child) kill() {
	c.signal(syscall.SIGKILL)
	<-c.done
}

// stop sends sig, waits up to stopGrace for the process to end, then
// kills it. It returns an error if the kill was needed.
func (c *child) stop(sig syscall.Signal) error {
	c.signal(sig)
	select {
	case <-c.done:
		return nil
	case <-time.After(stopGrace):
		c.kill()
		return fmt.Errorf("testenv: %s ignored %v for %v; killed", c.name, sig, stopGrace)
	}
}

// failure builds an error about the process that includes the end of its log.
func (c *child) failure(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if c.exited() {
		msg += fmt.Sprintf(" (exited: %v)", c.err)
	}
	if c.logPath == "" {
		return fmt.Errorf("testenv: %s: %s", c.name, msg)
	}
	return fmt.Errorf("testenv: %s: %s\n--- last lines of %s ---\n%s", c.name, msg, c.logPath, logTail(c.logPath, 30))
}

// logTail returns the last n lines of the file at path.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// serviceUser is the unprivileged account servers run as when the tests run
// as root (Postgres and PgBouncer refuse to run as root).
type serviceUser struct {
	uid, gid uint32
	root     bool // false: we are not root, nothing to switch
}

var (
	serviceUserOnce sync.Once
	serviceUserVal  serviceUser
	serviceUserErr  error
)

// lookupServiceUser returns the account to run Postgres and PgBouncer as.
func lookupServiceUser() (serviceUser, error) {
	serviceUserOnce.Do(func() {
		if os.Geteuid() != 0 {
			return
		}
		u, err := user.Lookup("postgres")
		if err != nil {
			serviceUserErr = fmt.Errorf("testenv: running as root needs a postgres user: %w", err)
			return
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err := errors.Join(err1, err2); err != nil {
			serviceUserErr = fmt.Errorf("testenv: postgres user ids: %w", err)
			return
		}
		serviceUserVal = serviceUser{uid: uint32(uid), gid: uint32(gid), root: true}
	})
	return serviceUserVal, serviceUserErr
}

// apply makes cmd run as the service user.
func (u serviceUser) apply(cmd *exec.Cmd) {
	if !u.root {
		return
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: u.uid, Gid: u.gid}
}

// own gives the service user the paths.
func (u serviceUser) own(paths ...string) error {
	if !u.root {
		return nil
	}
	for _, p := range paths {
		if err := os.Chown(p, int(u.uid), int(u.gid)); err != nil {
			return fmt.Errorf("testenv: chown %s: %w", p, err)
		}
	}
	return nil
}

// run runs a short command as u and returns an error with its output.
func (u serviceUser) run(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	u.apply(cmd)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("testenv: %s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}
