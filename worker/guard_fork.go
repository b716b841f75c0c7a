package worker

import (
	"errors"
	"os"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// forkWorker starts the worker in its own process group with the guard's
// environment, working directory and stdio. The worker gets SIGKILL if the
// guard dies (PR_SET_PDEATHSIG). The death signal is tied to the forking
// OS thread, so the fork happens on a locked thread that is held until
// release is called, after the worker is gone.
func forkWorker(path string, argv []string) (pid int, release func(), err error) {
	type result struct {
		pid int
		err error
	}
	res := make(chan result, 1)
	rel := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
			Env:   workerEnv(os.Environ()),
			Files: []uintptr{0, 1, 2},
			Sys:   &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
		})
		res <- result{pid, err}
		if err == nil {
			<-rel
		}
	}()
	r := <-res
	if r.err != nil {
		<-done
		return 0, nil, r.err
	}
	return r.pid, func() { close(rel); <-done }, nil
}

// reapedChild is one child reaped by reapChildren.
type reapedChild struct {
	pid    int
	status unix.WaitStatus
}

// reapChildren waits for any child (the worker, and the orphans re-parented
// to the guard as a child subreaper) and sends each to out. It closes out
// and returns when the guard has no child left.
func reapChildren(out chan<- reapedChild) {
	defer close(out)
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		out <- reapedChild{pid: pid, status: ws}
	}
}

// GuardEnvPrefix marks environment variables meant for the guard only
// (such as the backend settings its orphan hook needs); the guard removes
// them from the worker's environment.
const GuardEnvPrefix = "REGENT_GUARD_"

// workerEnv returns env without the guard-only variables.
func workerEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, GuardEnvPrefix) {
			out = append(out, kv)
		}
	}
	return out
}
