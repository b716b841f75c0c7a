package integration

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/regentd/regent/worker"
)

// A guard that starts late (issue 12, "no late start"; DESIGN.md safety
// properties 2, 4 and 6). Leader a runs two workers: worker 0 lives,
// worker 1 crashes every 100 ms and is started again at once, so a guard
// of a is forked again and again; every guard of a sleeps its first
// second (worker.EnvTestStartDelay), as an exec on a loaded host can,
// before it looks at its group lock or its control pipe. a's supervisor
// alone is SIGKILLed while a freshly forked guard sleeps. Worker 0's guard
// finds its pipe at EOF, kills its worker and, if it is the last guard of
// the pool, releases the term; follower b takes over. The sleeping guard
// must never start its worker: it counts in the pool from its fork (the
// supervisor took the group lock for it, fd 5), so the term is released
// only once it is gone, and it refuses to start on a pipe already at EOF.
// Before the fix it took the lock itself after its sleep, when worker 0's
// guard had already released the term, read EOF as "nothing queued" and
// started a worker of a's term inside b's.
//
// That worker lives only until its guard reads the EOF again, well under
// a millisecond: too short to write a line for the observer. So the case
// also watches the start itself: a runs its worker from a script of its
// own (./late-start-worker in its working directory; b has its own, so
// both publish the same command), and execve opens the file it runs, an
// IN_OPEN event however soon the process is killed. After the window the
// test waits for the sleeping guard to exit (then it can start nothing)
// and fails on any start of a's worker after a's supervisor died.
func TestMatrixLateStartingGuard(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		shared := newCluster(t, be)
		t.Cleanup(func() { sweepCluster(t, shared.name, "") })
		cc := lateStartCase()
		res := &containResult{name: cc.name}
		t.Run(cc.name, func(t *testing.T) { runContainCase(t, shared, be, cc, res) })
		t.Logf("late-start result (%s):\n%-20s %-6s %-24s %-26s %s\n%s", be.name, "case", "result", "next leader (bound)", "overlap", "orphans", res)
	})
}

const (
	// lateStartDelay is how long every guard of a sleeps before it takes
	// its lock and reads its pipe: far longer than the release of a's
	// term and b's first worker line take (about 250 ms), well short of
	// a lease.
	lateStartDelay = time.Second
	// lateCrashAfter is the run time of a's crashing worker.
	lateCrashAfter = 100 * time.Millisecond
	// lateWorkerScript is the worker command of both replicas, a script
	// in each one's working directory.
	lateWorkerScript = "late-start-worker"
)

// lateStart is the state of one run of the late-start case.
type lateStart struct {
	opens *openWitness // opens of a's worker script
	guard int          // the sleeping guard SIGKILLed a's supervisor under
	pidfd int          // the sleeping guard's pidfd
}

// lateStartCase returns the case, with state of its own for one run.
func lateStartCase() containCase {
	ls := &lateStart{pidfd: -1}
	return containCase{
		name:    "late-start",
		writers: 1,
		killsA:  true,
		setup: func(c *cluster, a, b *replicaOpts) {
			run := strings.Join([]string{shQuote(c.worker), "-out", shQuote(c.outFile), "-interval", workerTick.String()}, " ")
			aScript := c.writeScript(a.node, lateWorkerScript, fmt.Sprintf(
				"# worker 1 crashes after %s\nif [ \"$REGENT_WORKER\" = 1 ]; then exec %s -exit-after %s; fi\nexec %s\n",
				lateCrashAfter, run, lateCrashAfter, run))
			c.writeScript(b.node, lateWorkerScript, "exec "+run+"\n")
			for _, o := range []*replicaOpts{a, b} {
				o.command = []string{"./" + lateWorkerScript}
				o.extra = append(o.extra, "--concurrency", "2",
					"--restart-initial-backoff", "10ms", "--restart-max-backoff", "50ms")
			}
			a.env = append(a.env, worker.EnvTestStartDelay+"="+lateStartDelay.String())
			ls.opens = watchOpens(c.t, aScript)
		},
		fault: func(k *containRun) (time.Time, string, time.Duration) {
			var seenAt time.Time
			ls.guard, seenAt = k.awaitFreshGuard()
			fd, err := unix.PidfdOpen(ls.guard, 0)
			if err != nil {
				k.t.Fatalf("pidfd of guard %d: %v", ls.guard, err)
			}
			ls.pidfd = fd
			k.t.Cleanup(func() { unix.Close(fd) })
			at := time.Now()
			if err := syscall.Kill(k.a.cmd.Process.Pid, syscall.SIGKILL); err != nil {
				k.t.Fatalf("SIGKILL a: %v", err)
			}
			<-k.a.done
			age := at.Sub(seenAt)
			if age > lateStartDelay/2 {
				k.t.Fatalf("guard %d was forked up to %s before the SIGKILL: not surely asleep", ls.guard, age)
			}
			k.t.Logf("SIGKILLed a's supervisor (pid %d) alone, at most %s after it forked guard %d (asleep for %s, no worker); processes of the queue:\n%s",
				k.a.cmd.Process.Pid, age.Round(time.Millisecond), ls.guard, lateStartDelay, formatProcs(clusterProcs(k.c.name, k.q)))
			// With the fix the sleeping guard holds the release back until
			// it has woken and refused to start: about lateStartDelay.
			return at, fmt.Sprintf("SIGKILL of a's supervisor while its guard %d sleeps %s before its start", ls.guard, lateStartDelay), boundCutOff
		},
		check: func(k *containRun, what string, at, first time.Time) {
			// Once the sleeping guard has exited it can start nothing.
			if !pidfdExited(ls.pidfd, lateStartDelay+5*time.Second) {
				k.t.Errorf("%s: guard %d still runs %s after the SIGKILL", what, ls.guard, lateStartDelay+5*time.Second)
			}
			if before := len(ls.opens.since(time.Time{})) - len(ls.opens.since(at)); before == 0 {
				k.t.Fatalf("%s: the witness saw no start of a's worker before the fault: it sees nothing", what)
			}
			opens := ls.opens.since(at)
			if len(opens) == 0 {
				k.t.Logf("%s: no worker of term %d started after a's supervisor died", what, k.term)
				return
			}
			into := opens[0].Sub(first)
			if into > 0 {
				k.res.lateStart = fmt.Sprintf("late start %s in", into.Round(time.Millisecond))
				k.t.Errorf("OVERLAP (safety properties 2 and 4): %s: a worker of term %d started %s after a's supervisor died, %s after the next term's first worker line (%d opens of a's worker script: its exec, then sh reading it)",
					what, k.term, opens[0].Sub(at).Round(time.Millisecond), into.Round(time.Millisecond), len(opens))
				return
			}
			k.res.lateStart = fmt.Sprintf("late start %s before", (-into).Round(time.Millisecond))
			k.t.Errorf("LATE START (safety property 4): %s: a worker of term %d started %s after a's supervisor died (%s before the next term's first worker line; %d opens of a's worker script)",
				what, k.term, opens[0].Sub(at).Round(time.Millisecond), (-into).Round(time.Millisecond), len(opens))
		},
	}
}

// writeScript writes an executable shell script named name into node's
// working directory and returns its path.
func (c *cluster) writeScript(node, name, body string) string {
	c.t.Helper()
	dir := c.home(node)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// awaitFreshGuard waits until a's supervisor forks a new guard (one not
// seen at the previous poll) that has no child yet, i.e. is asleep in its
// start delay, and returns its pid and the start of the poll before the
// one that found it: the guard was forked after that.
func (k *containRun) awaitFreshGuard() (int, time.Time) {
	k.t.Helper()
	sup := k.a.cmd.Process.Pid
	last := time.Now()
	seen := map[int]bool{}
	for _, pid := range regentTree(k.c.regent, sup) {
		seen[pid] = true
	}
	var guard int
	var since time.Time
	eventually(k.t, 10*lateStartDelay, "a new guard of a, asleep before its start", func() bool {
		now := time.Now()
		parents := map[int]bool{}
		for _, s := range allProcs() {
			if !dead(s.state) {
				parents[s.ppid] = true
			}
		}
		for _, pid := range regentTree(k.c.regent, sup) {
			if !seen[pid] && !parents[pid] {
				guard, since = pid, last
				return true
			}
			seen[pid] = true
		}
		last = now
		return false
	})
	return guard, since
}

// pidfdExited waits up to d for the process of pidfd to exit.
func pidfdExited(pidfd int, d time.Duration) bool {
	end := time.Now().Add(d)
	for {
		left := time.Until(end)
		if left < 0 {
			left = 0
		}
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left.Milliseconds()))
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0
	}
}

// openWitness records when a file is opened (inotify IN_OPEN). execve
// opens the file it runs, so every start of a program is seen, even one
// killed before it ran an instruction.
type openWitness struct {
	f    *os.File
	done chan struct{} // closed when read returns

	mu sync.Mutex
	at []time.Time
}

// watchOpens watches path until t's clean-up.
func watchOpens(t testing.TB, path string) *openWitness {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatalf("inotify: %v", err)
	}
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_OPEN); err != nil {
		unix.Close(fd)
		t.Fatalf("inotify watch %s: %v", path, err)
	}
	// Non-blocking: read waits in the runtime's poller, and Close ends it.
	w := &openWitness{f: os.NewFile(uintptr(fd), "inotify:"+path), done: make(chan struct{})}
	go w.read()
	t.Cleanup(func() {
		w.f.Close()
		<-w.done
	})
	return w
}

// read records the time of every IN_OPEN event until the file is closed.
func (w *openWitness) read() {
	defer close(w.done)
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		w.mu.Lock()
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			// struct inotify_event: wd, mask, cookie, len, name[len].
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			if mask&unix.IN_OPEN != 0 {
				w.at = append(w.at, now)
			}
			off += unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(buf[off+12:]))
		}
		w.mu.Unlock()
	}
}

// since returns the times of the opens seen after t.
func (w *openWitness) since(t time.Time) []time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []time.Time
	for _, at := range w.at {
		if at.After(t) {
			out = append(out, at)
		}
	}
	return out
}
