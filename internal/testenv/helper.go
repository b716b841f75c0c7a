package testenv

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Helper is a re-executed copy of the test binary running as a helper
// process (its TestMain recognises the environment it was given and runs
// the helper's code instead of the tests). Its stdin is a pipe held by the
// test binary: a helper should exit at EOF on stdin, which happens when the
// test binary dies, however it dies.
type Helper struct {
	r *reexec
}

// StartHelper re-executes the test binary with env appended to its
// environment and waits up to timeout for it to print a line starting with
// readyPrefix on stdout; it returns the helper and the rest of that line.
// The helper's stderr goes to t.Log. The helper is killed at the end of the
// test. StartHelper fails the test if the helper exits or stays silent.
func StartHelper(t testing.TB, env []string, readyPrefix string, timeout time.Duration) (*Helper, string) {
	t.Helper()
	lw := &lineWriter{t: t}
	r, line, err := startReexec("helper", env, lw, "", readyPrefix, timeout)
	if err != nil {
		t.Fatal(err)
	}
	// Runs before lw.finish (registered later, so earlier in LIFO order)
	// and so before the test ends: Wait has copied all of stderr by then.
	t.Cleanup(func() {
		r.kill()
		lw.finish()
	})
	return &Helper{r: r}, line
}

// PID returns the helper's process id.
func (h *Helper) PID() int { return h.r.pid() }

// Kill sends SIGKILL to the helper and waits for its end. Idempotent.
func (h *Helper) Kill() { h.r.kill() }

// Signal sends sig to the helper if it still runs.
func (h *Helper) Signal(sig syscall.Signal) { h.r.signal(sig) }

// Done is closed when the helper has exited.
func (h *Helper) Done() <-chan struct{} { return h.r.done }

// reexec is a re-executed copy of the test binary with a stdin pipe.
type reexec struct {
	*child
	stdin *os.File // write end of the helper's stdin
}

// startReexec starts the test binary again with env appended. stderr
// receives the helper's stderr (nil: logPath). It waits up to timeout for a
// stdout line starting with readyPrefix and returns the rest of that line.
func startReexec(name string, env []string, stderr io.Writer, logPath, readyPrefix string, timeout time.Duration) (*reexec, string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, "", fmt.Errorf("testenv: find the test binary: %w", err)
	}
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return nil, "", fmt.Errorf("testenv: %w", err)
	}
	defer stdinR.Close() // the child has its own copy
	ready := &readyLine{prefix: readyPrefix, ch: make(chan string, 1)}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = stdinR
	cmd.Stdout = ready
	cmd.Stderr = stderr
	cmd.WaitDelay = 5 * time.Second
	c, err := startChild(name, cmd, logPath, 0)
	if err != nil {
		stdinW.Close()
		return nil, "", err
	}
	r := &reexec{child: c, stdin: stdinW}
	select {
	case line := <-ready.ch:
		return r, line, nil
	case <-c.done:
		r.kill()
		return nil, "", c.failure("exited before it was ready")
	case <-time.After(timeout):
		r.kill()
		return nil, "", c.failure("not ready after %v", timeout)
	}
}

// kill kills the helper, waits for its end and closes its stdin.
func (r *reexec) kill() {
	r.child.kill()
	r.stdin.Close()
}

// stop stops the helper with sig (see child.stop) and closes its stdin.
func (r *reexec) stop(sig syscall.Signal) error {
	defer r.stdin.Close()
	return r.child.stop(sig)
}

// readyLine is a writer that delivers the rest of the first line that
// starts with prefix to ch, once, and discards everything else.
type readyLine struct {
	prefix string
	ch     chan string // capacity 1
	mu     sync.Mutex
	buf    []byte
	sent   bool
}

func (r *readyLine) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sent {
		return len(p), nil
	}
	r.buf = append(r.buf, p...)
	for {
		i := bytes.IndexByte(r.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(r.buf[:i])
		r.buf = r.buf[i+1:]
		if rest, ok := strings.CutPrefix(line, r.prefix); ok {
			r.sent = true
			r.buf = nil
			r.ch <- rest
			return len(p), nil
		}
	}
}

// lineWriter forwards complete lines to t.Log until finish, then to stderr.
type lineWriter struct {
	t        testing.TB
	mu       sync.Mutex
	buf      []byte
	finished bool
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.finished {
		return os.Stderr.Write(p)
	}
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.t.Log(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}

// finish logs a last partial line and sends later writes to stderr.
func (w *lineWriter) finish() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.t.Log(string(w.buf))
		w.buf = nil
	}
	w.finished = true
}
