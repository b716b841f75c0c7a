package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/regentd/regent/integration/observer"
	"github.com/regentd/regent/internal/faultproxy"
)

// Containment faults (issue 12; DESIGN.md safety properties 2, 4 and 6).
// Everything a worker starts must die with its term, even when the
// processes that should kill it cannot act: the supervisor and all its
// guards SIGKILLed at one instant (`pkill -9 regent`), a guard SIGKILLed
// alone, a guard frozen while its leader is cut off or killed. Each case
// runs a leader "<case>-a" and a hot follower "<case>-b" on a queue of its
// own, injects the fault, and asserts:
//
//   - a new term's workers run within the documented bound for the fault;
//   - no overlap: no line of the old term in the observer file after the
//     new term's first line (the workers, and the helpers they started,
//     write lines of their term; any of them alive keeps writing);
//   - no orphan: no process of an old term alive, found by scanning /proc
//     for the REGENT_CLUSTER/REGENT_QUEUE/REGENT_TERM of its environment,
//     so whatever left the worker's process group or session (setsid, a
//     shell's child, a frozen guard) is found too;
//   - then the matrix's end checks for the queue: `status --check` OK,
//     the surviving replicas stop cleanly on SIGTERM leaving nothing
//     behind, and every term seen is recorded in the backend's history.
//
// The five cases share one cluster per backend and run concurrently, each
// with its own queue, replicas and observer file.
func TestMatrixContainment(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		shared := newCluster(t, be)
		// A backstop after every case's own clean-up: nothing of the
		// cluster may outlive the test, whatever failed.
		t.Cleanup(func() { sweepCluster(t, shared.name, "") })
		results := make([]*containResult, len(containCases))
		var wg sync.WaitGroup
		for i, cc := range containCases {
			res := &containResult{name: cc.name}
			results[i] = res
			wg.Add(1)
			go func() {
				defer wg.Done()
				t.Run(cc.name, func(t *testing.T) { runContainCase(t, shared, be, cc, res) })
			}()
		}
		wg.Wait()
		var b strings.Builder
		fmt.Fprintf(&b, "containment results (%s):\n%-20s %-6s %-24s %-26s %s\n", be.name, "case", "result", "next leader (bound)", "overlap", "orphans")
		for _, r := range results {
			b.WriteString(r.String())
			b.WriteByte('\n')
		}
		t.Log(b.String())
	})
}

// Bounds of the containment cases, beyond those of the fault matrix.
const (
	// boundStepDown is the handover bound after `step-down`: the target is
	// 25 ms (DESIGN.md, liveness targets), measured 62-69 ms; a second
	// covers a loaded machine before checkBound's slack.
	boundStepDown = time.Second
	// containWindow is how long after the new term's first worker line
	// the old term is watched for lines: anything of it still alive
	// writes one every worker tick.
	containWindow = time.Second
	// orphanGrace is how long a process of an old term may take to vanish
	// once the window is over (it may be dying, not yet reaped).
	orphanGrace = time.Second
	// stopGrace bounds a surviving replica's graceful stop at the end of
	// a case.
	stopGrace = 10 * time.Second
)

// containCase is one containment fault.
type containCase struct {
	name string
	// shell runs the test worker as `sh -c '<testworker ...>; :'`: the
	// shell is the guard's direct child, the worker the shell's child.
	shell bool
	// workerArgs are added to the test worker's flags.
	workerArgs []string
	// writers is how many processes of a's term write lines once its
	// tree is up (the worker and its helpers).
	writers int
	// viaProxy puts a fault proxy between a and the backend.
	viaProxy bool
	// killsA: the fault kills a's supervisor.
	killsA bool
	// setup, if set, adjusts the options of a and b (command, flags,
	// environment) once the case's defaults are in place.
	setup func(c *cluster, a, b *replicaOpts)
	// check, if set, runs the case's own checks after the observation
	// window and the orphan scan; at is the fault's time, first the new
	// term's first worker line.
	check func(k *containRun, what string, at, first time.Time)
	// fault injects the fault and returns when it took effect, what it
	// was, and the bound for the next term's first worker line from then.
	fault func(k *containRun) (at time.Time, what string, bound time.Duration)
}

var containCases = []containCase{
	{
		// 1. `pkill -9 regent` with a shell between the guard and the
		// worker: the shell dies with its guard (PR_SET_PDEATHSIG), its
		// child, the real worker, lives on.
		name:    "kill-all-sh",
		shell:   true,
		writers: 1,
		killsA:  true,
		fault: func(k *containRun) (time.Time, string, time.Duration) {
			at, n := k.killSupervisorAndGuards()
			// TTL + 0.5 s when the guards died too (DESIGN.md).
			return at, fmt.Sprintf("SIGKILL of a and its %d regent processes at one instant", n), boundCutOff
		},
	},
	{
		// 2. `pkill -9 regent` with a worker whose helper left its
		// process group and session (setsid) and writes lines of its term.
		name:       "kill-all-setsid",
		workerArgs: []string{"-spawn-child", "-child-setsid"},
		writers:    2,
		killsA:     true,
		fault: func(k *containRun) (time.Time, string, time.Duration) {
			at, n := k.killSupervisorAndGuards()
			return at, fmt.Sprintf("SIGKILL of a and its %d regent processes at one instant", n), boundCutOff
		},
	},
	{
		// 3. One guard SIGKILLed: its worker dies (PR_SET_PDEATHSIG), the
		// supervisor kills the worker's process group and restarts it;
		// the setsid helper, in another group, is re-parented to the
		// supervisor (a subreaper). Then a normal step-down: the helper
		// must not run into the next term.
		name:       "guard-kill-stepdown",
		workerArgs: []string{"-spawn-child", "-child-setsid"},
		writers:    2,
		fault: func(k *containRun) (time.Time, string, time.Duration) {
			k.killGuardsAndWaitRestart()
			at := time.Now()
			out, errOut, code := k.c.regentCmd("step-down", "--queue", k.q, "--wait", "20s")
			if code != 0 {
				k.t.Errorf("step-down --queue %s: exit %d: %s%s", k.q, code, out, errOut)
			}
			return at, "step-down after a SIGKILLed guard", boundStepDown
		},
	},
	{
		// 4. A frozen guard, then the leader cut off from the backend: at
		// its deadline the supervisor asks the guard to kill the worker
		// and waits; the guard cannot; the follower takes over once the
		// lease expires.
		name:     "frozen-guard-cut",
		writers:  1,
		viaProxy: true,
		fault: func(k *containRun) (time.Time, string, time.Duration) {
			n := k.freezeGuards()
			at := time.Now()
			k.proxy.SetMode(faultproxy.Blackhole)
			return at, fmt.Sprintf("%d guard(s) frozen, then a cut off from the backend", n), boundCutOff
		},
	},
	{
		// 5. A frozen guard, then its supervisor SIGKILLed. A regression
		// test: it holds today, though not through PR_SET_PDEATHSIG (the
		// guard has none): the guard leads a process group of its own in
		// its supervisor's session, so the supervisor's death orphans that
		// group, and the kernel sends a newly orphaned group with a
		// stopped member SIGHUP then SIGCONT (POSIX). The woken guard finds
		// its control pipe at EOF, kills the tree and releases the term.
		// A guard moved to a session of its own would lose that.
		name:    "frozen-guard-kill",
		writers: 1,
		killsA:  true,
		fault: func(k *containRun) (time.Time, string, time.Duration) {
			n := k.freezeGuards()
			at := time.Now()
			if err := syscall.Kill(k.a.cmd.Process.Pid, syscall.SIGKILL); err != nil {
				k.t.Fatalf("SIGKILL a: %v", err)
			}
			<-k.a.done
			// The guard cannot release the term: a full lease.
			return at, fmt.Sprintf("%d guard(s) frozen, then a's supervisor SIGKILLed", n), boundCutOff
		},
	},
}

// containRun is one case in progress.
type containRun struct {
	t     *testing.T
	c     *cluster
	q     string
	tail  *tailReader
	a, b  *replica
	proxy *faultproxy.Proxy
	node  string // a's node
	term  int64  // a's term when the fault is injected
	res   *containResult
}

// containResult is what a case measured, for the summary table.
type containResult struct {
	name      string
	ran       bool
	failed    bool
	takeover  time.Duration
	bound     time.Duration
	overlap   time.Duration
	endless   bool // the old term still wrote lines at the end of the window
	orphans   []termProc
	problems  []string
	newLeader string
	// lateStart tells of workers of the old term started after its
	// supervisor died ("" if none).
	lateStart string
}

func (r *containResult) String() string {
	if !r.ran {
		return fmt.Sprintf("%-20s %-6s (did not reach the fault)", r.name, verdict(r.failed))
	}
	ov := "none"
	if r.overlap > 0 {
		ov = r.overlap.Round(time.Millisecond).String()
		if r.endless {
			ov += " (still running)"
		}
	}
	if r.lateStart != "" {
		if r.overlap > 0 {
			ov += "; " + r.lateStart
		} else {
			ov = r.lateStart
		}
	}
	var pids []string
	for _, p := range r.orphans {
		pids = append(pids, fmt.Sprintf("%d:%s", p.pid, p.comm))
	}
	orph := "none"
	if len(pids) > 0 {
		orph = fmt.Sprintf("%d [%s]", len(pids), strings.Join(pids, " "))
	}
	return fmt.Sprintf("%-20s %-6s %-24s %-26s %s", r.name, verdict(r.failed),
		fmt.Sprintf("%s (%s)", r.takeover.Round(time.Millisecond), r.bound), ov, orph)
}

func verdict(failed bool) string {
	if failed {
		return "FAIL"
	}
	return "pass"
}

// runContainCase runs one case on the shared cluster.
func runContainCase(t *testing.T, shared *cluster, be backend, cc containCase, res *containResult) {
	defer func() { res.failed = t.Failed() }()
	dir := t.TempDir()
	c := &cluster{t: t, be: be, name: shared.name, regent: shared.regent, worker: shared.worker,
		dir: dir, outFile: filepath.Join(dir, "observer.log")}
	q := cc.name
	// Registered before the replicas: runs after their own clean-up has
	// killed them, and kills whatever of this queue they left behind.
	t.Cleanup(func() { sweepCluster(t, c.name, q) })
	k := &containRun{t: t, c: c, q: q, tail: newTailReader(t, c.outFile), res: res}

	opts := replicaOpts{queues: []string{q}, workerArgs: cc.workerArgs}
	if cc.shell {
		w := []string{c.worker, "-out", c.outFile, "-interval", workerTick.String()}
		w = append(w, cc.workerArgs...)
		for i := range w {
			w[i] = shQuote(w[i])
		}
		// "; :" keeps the shell from exec'ing the worker in its place.
		opts.command = []string{"sh", "-c", strings.Join(w, " ") + "; :"}
	}
	aOpts, bOpts := opts, opts
	aOpts.node, bOpts.node = q+"-a", q+"-b"
	if cc.viaProxy {
		k.proxy = c.proxy()
		aOpts.backend = be.viaProxy(k.proxy.Addr())
	}
	if cc.setup != nil {
		cc.setup(c, &aOpts, &bOpts)
	}
	k.a = c.start(aOpts)
	leader, term := c.waitLeaderRunning(q, hangTimeout)
	if leader != aOpts.node {
		t.Fatalf("leader %s, want %s", leader, aOpts.node)
	}
	k.node, k.term = leader, term
	k.b = c.start(bOpts)
	c.waitFollower(q, bOpts.node)
	k.waitWriters(cc.writers)
	if now := c.runningNodes(q, 100*time.Millisecond); len(now) != 1 || now[k.node] != k.term {
		t.Fatalf("before the fault: running %v, want only %s of term %d", now, k.node, k.term)
	}
	t.Logf("before the fault: %s leads term %d; its processes:\n%s", k.node, k.term, formatProcs(clusterProcs(c.name, q)))

	at, what, bound := cc.fault(k)
	res.ran, res.bound = true, bound
	what = fmt.Sprintf("%s %s", be.name, what)
	node, newTerm, first, ok := k.awaitNewTerm(bound + boundSlack + 5*time.Second)
	if !ok {
		t.Fatalf("%s: no term newer than %d ran workers of %s within %s", what, k.term, q, bound+boundSlack+5*time.Second)
	}
	res.takeover, res.newLeader = first.Sub(at), node
	checkBound(t, fmt.Sprintf("%s: new leader %s (term %d → %d) running", what, node, k.term, newTerm), first.Sub(at), bound)

	for time.Since(first) < containWindow {
		time.Sleep(50 * time.Millisecond) // observation window: the old term must not write
	}
	if k.proxy != nil {
		k.proxy.SetMode(faultproxy.Pass)
	}
	k.checkOverlap(what)
	k.checkOrphans(what)
	if cc.check != nil {
		cc.check(k, what, at, first)
	}
	var live []*replica
	for _, r := range []*replica{k.a, k.b} {
		if r == k.a && cc.killsA {
			continue
		}
		if r.exited() {
			t.Errorf("%s: replica %s exited unexpectedly: %v", what, r.node, r.exitErr)
			continue
		}
		live = append(live, r)
	}
	k.finish(what, live)
}

// waitWriters waits until n processes of a's term write lines: the
// worker and the helpers it starts are all up.
func (k *containRun) waitWriters(n int) {
	k.t.Helper()
	eventually(k.t, hangTimeout, fmt.Sprintf("%d processes of %s writing lines", n, k.node), func() bool {
		cut := time.Now().Add(-200 * time.Millisecond)
		pids := map[int]bool{}
		for _, l := range k.tail.Lines() {
			if l.Queue == k.q && l.Node == k.node && l.At.After(cut) {
				pids[l.PID] = true
			}
		}
		return len(pids) >= n
	})
}

// awaitNewTerm waits up to d for a worker line of a term newer than a's
// and returns its node, term and the time of its first line.
func (k *containRun) awaitNewTerm(d time.Duration) (string, int64, time.Time, bool) {
	var node string
	var term int64
	var first time.Time
	_, err := pollFor(d, func() bool {
		for _, l := range k.tail.Lines() {
			if l.Queue == k.q && l.Term > k.term && (first.IsZero() || l.At.Before(first)) {
				node, term, first = l.Node, l.Term, l.At
			}
		}
		return !first.IsZero()
	})
	return node, term, first, err == nil
}

// checkOverlap judges the observer file: no two terms' lines interleave.
func (k *containRun) checkOverlap(what string) {
	k.t.Helper()
	lines := k.tail.Lines()
	rep := observer.Check(lines, overlapTol)
	k.res.overlap = rep.MaxOverlap
	if rep.OK() {
		k.t.Logf("%s: observer: %d lines, no overlap", what, rep.Lines)
		return
	}
	var last time.Time
	pids := map[int]bool{}
	for _, l := range lines {
		if l.Queue == k.q && l.Term == k.term {
			if l.At.After(last) {
				last = l.At
			}
			pids[l.PID] = true
		}
	}
	k.res.endless = time.Since(last) < 250*time.Millisecond
	still := ""
	if k.res.endless {
		still = fmt.Sprintf("; it is still writing (last line %s ago): an overlap without end", time.Since(last).Round(time.Millisecond))
	}
	k.t.Errorf("OVERLAP (safety properties 2 and 6): %s: term %d of %s kept running %s into the next term%s; pids of term %d seen: %v\n%s",
		what, k.term, k.node, rep.MaxOverlap.Round(time.Millisecond), still, k.term, sortedPIDs(pids), rep)
}

// checkOrphans fails the test if a process of a term older than the
// newest one still lives once the window is over.
func (k *containRun) checkOrphans(what string) {
	k.t.Helper()
	var orphans []termProc
	var newest int64
	if _, err := pollFor(orphanGrace, func() bool {
		procs := clusterProcs(k.c.name, k.q)
		newest = 0
		for _, l := range k.tail.Lines() {
			if l.Queue == k.q {
				newest = max(newest, l.Term)
			}
		}
		for _, p := range procs {
			newest = max(newest, p.term)
		}
		orphans = orphans[:0]
		for _, p := range procs {
			if p.term < newest {
				orphans = append(orphans, p)
			}
		}
		return len(orphans) == 0
	}); err != nil {
		k.res.orphans = append([]termProc(nil), orphans...)
		k.t.Errorf("ORPHANS (safety property 6): %s: %d processes of old terms alive %s after the window (current term %d):\n%s",
			what, len(orphans), orphanGrace, newest, formatProcs(orphans))
		return
	}
	k.t.Logf("%s: no process of an old term alive", what)
}

// finish runs the end-of-case checks: status OK for the queue, a clean
// stop of the surviving replicas leaving nothing behind, no overlap over
// the whole run, every term seen recorded in the backend's history.
func (k *containRun) finish(what string, live []*replica) {
	t, c := k.t, k.c
	t.Helper()
	var out, errOut string
	code := -1
	if _, err := pollFor(2*testTTL+2*time.Second, func() bool {
		out, errOut, code = c.regentCmd("status", "--check", "--queue", k.q)
		return code == 0 && strings.HasPrefix(out, "REGENT OK")
	}); err != nil {
		t.Errorf("%s: status --check --queue %s not OK within %s: exit %d\n%s%s", what, k.q, 2*testTTL+2*time.Second, code, out, errOut)
	}
	for _, r := range live {
		_ = r.cmd.Process.Signal(syscall.SIGCONT)
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, r := range live {
		select {
		case <-r.done:
			if r.exitErr != nil {
				t.Errorf("%s: replica %s: %v after SIGTERM", what, r.node, r.exitErr)
			}
		case <-time.After(stopGrace):
			t.Errorf("%s: replica %s did not exit within %s of SIGTERM (waiting on a guard that does not act?)", what, r.node, stopGrace)
		}
	}
	var left []termProc
	if _, err := pollFor(3*time.Second, func() bool {
		left = clusterProcs(c.name, k.q)
		return len(left) == 0
	}); err != nil {
		t.Errorf("%s: processes of queue %s alive after every replica stopped or died:\n%s", what, k.q, formatProcs(left))
	}
	rep := observer.Check(k.tail.Lines(), overlapTol)
	if !rep.OK() {
		if k.res.overlap == 0 {
			t.Errorf("OVERLAP at the end of the case: %s:\n%s", what, rep)
		}
		return // reported, with its detail, after the window
	}
	c.checkHistory(rep, []string{k.q})
}

// killSupervisorAndGuards does what `pkill -9 regent` does to replica a:
// SIGKILL of its `regent run` process and of every regent process below
// it (its guards), found from /proc. Every one of them is stopped
// (SIGSTOP) first, the supervisor before the others so that it starts no
// new guard: no process of the replica runs an instruction between the
// first SIGKILL and the last, the worst interleaving of pkill made
// certain. It returns the time of the SIGKILLs and how many guard
// processes were killed with the supervisor.
func (k *containRun) killSupervisorAndGuards() (time.Time, int) {
	k.t.Helper()
	sup := k.a.cmd.Process.Pid
	if err := syscall.Kill(sup, syscall.SIGSTOP); err != nil {
		k.t.Fatalf("SIGSTOP a: %v", err)
	}
	stopped := k.stopRegentTree(sup)
	if len(stopped) == 0 {
		k.t.Fatalf("no guard found below a (pid %d)", sup)
	}
	at := time.Now()
	_ = syscall.Kill(sup, syscall.SIGKILL)
	for _, pid := range stopped {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	<-k.a.done
	k.t.Logf("SIGKILLed a (pid %d) and its regent processes %v", sup, stopped)
	return at, len(stopped)
}

// stopRegentTree SIGSTOPs every regent process below root (root
// excluded) until none is left running, and returns their pids.
func (k *containRun) stopRegentTree(root int) []int {
	seen := map[int]bool{}
	var out []int
	for {
		n := 0
		for _, pid := range regentTree(k.c.regent, root) {
			if seen[pid] {
				continue
			}
			seen[pid] = true
			n++
			if err := syscall.Kill(pid, syscall.SIGSTOP); err == nil {
				out = append(out, pid)
			}
		}
		if n == 0 {
			return out
		}
	}
}

// freezeGuards SIGSTOPs a's guards (every regent process below a), and
// arranges for them to be woken and killed at clean-up. It returns how
// many it froze.
func (k *containRun) freezeGuards() int {
	k.t.Helper()
	frozen := k.stopRegentTree(k.a.cmd.Process.Pid)
	if len(frozen) == 0 {
		k.t.Fatalf("no guard found below a (pid %d)", k.a.cmd.Process.Pid)
	}
	k.t.Cleanup(func() {
		for _, pid := range frozen {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	})
	k.t.Logf("froze a's guard processes %v", frozen)
	return len(frozen)
}

// killGuardsAndWaitRestart SIGKILLs a's guards only, and waits until a
// has started its worker again (a new pid writing lines of its term).
func (k *containRun) killGuardsAndWaitRestart() {
	k.t.Helper()
	sup := k.a.cmd.Process.Pid
	guards := regentTree(k.c.regent, sup)
	if len(guards) == 0 {
		k.t.Fatalf("no guard found below a (pid %d)", sup)
	}
	seen := map[int]bool{}
	for _, l := range k.tail.Lines() {
		seen[l.PID] = true
	}
	for _, pid := range guards {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	killedAt := time.Now()
	k.t.Logf("SIGKILLed a's guard processes %v", guards)
	eventually(k.t, 15*time.Second, "a restarts its worker after the guard's death", func() bool {
		for _, l := range k.tail.Lines() {
			if l.Queue == k.q && l.Node == k.node && l.Term == k.term && !seen[l.PID] {
				return true
			}
		}
		return false
	})
	k.t.Logf("a restarted its worker %s after the guard's SIGKILL; processes of the queue:\n%s",
		time.Since(killedAt).Round(time.Millisecond), formatProcs(clusterProcs(k.c.name, k.q)))
}

// termProc is one live process (not a zombie) whose environment names a
// cluster: a guard, a worker, or anything a worker started, in its
// process group or not.
type termProc struct {
	pid, ppid, pgid, sid int
	state                byte
	comm                 string
	node, queue          string
	term                 int64
	cmdline              string
	parent               string // the parent's comm
}

func (p termProc) String() string {
	return fmt.Sprintf("pid %d state %c ppid %d (%s) pgid %d sid %d node %s term %d: %s",
		p.pid, p.state, p.ppid, p.parent, p.pgid, p.sid, p.node, p.term, p.cmdline)
}

func formatProcs(ps []termProc) string {
	if len(ps) == 0 {
		return "  (none)"
	}
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "  %s\n", p)
	}
	return strings.TrimRight(b.String(), "\n")
}

// procStat is the part of /proc/<pid>/stat the containment checks read.
type procStat struct {
	pid, ppid, pgid, sid int
	state                byte
	comm                 string
}

// readStat reads /proc/<pid>/stat; ok is false if the process is gone.
func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, false
	}
	open, closing := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return procStat{}, false
	}
	f := bytes.Fields(b[closing+1:])
	if len(f) < 4 {
		return procStat{}, false
	}
	s := procStat{pid: pid, state: f[0][0], comm: string(b[open+1 : closing])}
	s.ppid, _ = strconv.Atoi(string(f[1]))
	s.pgid, _ = strconv.Atoi(string(f[2]))
	s.sid, _ = strconv.Atoi(string(f[3]))
	return s, true
}

// allProcs returns the stat of every process (zombies included).
func allProcs() []procStat {
	entries, _ := os.ReadDir("/proc")
	out := make([]procStat, 0, len(entries))
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if s, ok := readStat(pid); ok {
			out = append(out, s)
		}
	}
	return out
}

func dead(state byte) bool { return state == 'Z' || state == 'X' || state == 'x' }

// clusterProcs lists the live processes whose environment has
// REGENT_CLUSTER=cluster (and REGENT_QUEUE=queue unless queue is empty).
func clusterProcs(cluster, queue string) []termProc {
	all := allProcs()
	comm := make(map[int]string, len(all))
	for _, s := range all {
		comm[s.pid] = s.comm
	}
	var out []termProc
	for _, s := range all {
		if dead(s.state) {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(s.pid), "environ"))
		if err != nil {
			continue
		}
		vars := map[string]string{}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if k, v, ok := strings.Cut(string(kv), "="); ok && strings.HasPrefix(k, "REGENT_") {
				vars[k] = v
			}
		}
		if vars["REGENT_CLUSTER"] != cluster || (queue != "" && vars["REGENT_QUEUE"] != queue) {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(s.pid), "cmdline"))
		term, _ := strconv.ParseInt(vars["REGENT_TERM"], 10, 64)
		out = append(out, termProc{pid: s.pid, ppid: s.ppid, pgid: s.pgid, sid: s.sid, state: s.state, comm: s.comm,
			node: vars["REGENT_NODE"], queue: vars["REGENT_QUEUE"], term: term,
			cmdline: strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " ")), parent: comm[s.ppid]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pid < out[j].pid })
	return out
}

// regentTree returns the pids of the live processes below root (root
// excluded) that run regent or its lean guard, regent-guard beside it (by
// executable or command name): the guards of a replica, and whatever of
// regent they run (the release helper).
func regentTree(regent string, root int) []int {
	guard := filepath.Join(filepath.Dir(regent), "regent-guard")
	children := map[int][]int{}
	state := map[int]byte{}
	comm := map[int]string{}
	for _, s := range allProcs() {
		children[s.ppid] = append(children[s.ppid], s.pid)
		state[s.pid] = s.state
		comm[s.pid] = s.comm
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			queue = append(queue, c)
			if dead(state[c]) {
				continue
			}
			exe, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(c), "exe"))
			if exe == regent || exe == guard || comm[c] == filepath.Base(regent) || comm[c] == filepath.Base(guard) {
				out = append(out, c)
			}
		}
	}
	return out
}

// sweepCluster SIGKILLs every live process of cluster (of queue, unless
// empty) — woken first if stopped — and waits until they are gone. It
// runs at clean-up, after the replicas were killed: whatever is left is
// what the test must not leave behind on a shared machine.
func sweepCluster(t testing.TB, cluster, queue string) {
	left := clusterProcs(cluster, queue)
	if len(left) == 0 {
		return
	}
	for _, p := range left {
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
		_ = syscall.Kill(p.pid, syscall.SIGCONT)
	}
	if _, err := pollFor(5*time.Second, func() bool { return len(clusterProcs(cluster, queue)) == 0 }); err != nil {
		t.Errorf("clean-up: processes of cluster %s queue %q survive SIGKILL:\n%s", cluster, queue, formatProcs(clusterProcs(cluster, queue)))
		return
	}
	t.Logf("clean-up: killed %d leftover processes of cluster %s queue %q:\n%s", len(left), cluster, queue, formatProcs(left))
}

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func sortedPIDs(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	sort.Ints(out)
	return out
}
