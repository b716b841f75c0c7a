package worker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Containment is how the kernel holds a worker's whole tree to its guard,
// so that everything the worker starts (a setsid helper, a double fork, a
// daemon) dies with the guard even when nobody is left to kill it: the
// supervisor and every guard SIGKILLed at one instant.
type Containment string

const (
	// ContainmentPIDNamespace: each guard is the init (PID 1) of a new PID
	// namespace holding its worker (needs CAP_SYS_ADMIN, i.e. root). When
	// the guard dies, however it dies, the kernel SIGKILLs every process
	// of the namespace.
	ContainmentPIDNamespace Containment = "pid-namespace"
	// ContainmentUserPIDNamespace: the same inside a new user namespace
	// that maps only regent's own uid and gid, for a regent that runs
	// unprivileged where the kernel allows user namespaces.
	ContainmentUserPIDNamespace Containment = "user+pid-namespace"
	// ContainmentNone: the guard kills its worker's process group and
	// every descendant it finds; a tree that outlives a SIGKILLed guard is
	// left to the service manager (systemd KillMode=control-group or
	// mixed, a container).
	ContainmentNone Containment = "none"
)

// Containments lists the values Spec.Containment and DetectContainment
// know, best first.
var Containments = []Containment{ContainmentPIDNamespace, ContainmentUserPIDNamespace, ContainmentNone}

// ParseContainment parses a containment name; "auto" and "" give "".
func ParseContainment(s string) (Containment, error) {
	switch s {
	case "", "auto":
		return "", nil
	}
	for _, c := range Containments {
		if string(c) == s {
			return c, nil
		}
	}
	return "", fmt.Errorf("worker: unknown containment %q (want auto, %s, %s or %s)", s,
		ContainmentPIDNamespace, ContainmentUserPIDNamespace, ContainmentNone)
}

// namespaced reports whether the guard runs as the init of its own PID
// namespace.
func (c Containment) namespaced() bool {
	return c == ContainmentPIDNamespace || c == ContainmentUserPIDNamespace
}

// sysProcAttr returns the attributes a guard is started with.
func (c Containment) sysProcAttr() *syscall.SysProcAttr {
	// The guard gets its own process group: a terminal's SIGINT to the
	// supervisor's group must not reach it; the supervisor owns stopping.
	a := &syscall.SysProcAttr{Setpgid: true}
	switch c {
	case ContainmentPIDNamespace:
		a.Cloneflags = unix.CLONE_NEWPID
	case ContainmentUserPIDNamespace:
		a.Cloneflags = unix.CLONE_NEWUSER | unix.CLONE_NEWPID
		a.UidMappings = []syscall.SysProcIDMap{{ContainerID: os.Getuid(), HostID: os.Getuid(), Size: 1}}
		a.GidMappings = []syscall.SysProcIDMap{{ContainerID: os.Getgid(), HostID: os.Getgid(), Size: 1}}
		a.GidMappingsEnableSetgroups = false
	}
	return a
}

// DetectContainment finds the best containment this process may use, by
// starting the guard that guard names (its GuardExe, GuardFile and
// GuardArgs; the rest is ignored) with -probe under each in turn: a guard
// that exits at once after checking that it is its namespace's init. It
// returns ContainmentNone and, in why, what each attempt met when the
// kernel allows none. Check the guard first with ProbeGuard: a guard that
// cannot run at all fails every probe.
func DetectContainment(ctx context.Context, guard Spec) (c Containment, why string) {
	guard = guard.guardDefaults()
	var reasons []string
	for _, c := range []Containment{ContainmentPIDNamespace, ContainmentUserPIDNamespace} {
		err := probeContainment(ctx, guard, c)
		if err == nil {
			return c, ""
		}
		reasons = append(reasons, fmt.Sprintf("%s: %v", c, err))
	}
	return ContainmentNone, strings.Join(reasons, "; ")
}

// ProbeGuard checks that the guard guard names (GuardExe, GuardFile,
// GuardArgs) runs, without a containment, and speaks this supervisor's
// protocol: a guard binary of another version, or one that cannot be
// executed, fails here rather than at every worker's start.
func ProbeGuard(ctx context.Context, guard Spec) error {
	return probeContainment(ctx, guard.guardDefaults(), ContainmentNone)
}

// probeContainment starts one probe guard under c.
func probeContainment(ctx context.Context, guard Spec, c Containment) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	guard.HelperFile = nil
	base, fds := guardCommand(guard, nil, nil, nil)
	args := append(base.Args[1:], "-probe", "-protocol", strconv.Itoa(GuardProtocol), "-containment", string(c))
	if fds.exe > 0 {
		args = append(args, "-exe-fd", strconv.Itoa(fds.exe))
	}
	cmd := exec.CommandContext(ctx, base.Path, args...)
	cmd.Args[0] = base.Args[0]
	cmd.ExtraFiles = base.ExtraFiles
	cmd.SysProcAttr = c.sysProcAttr()
	out, err := cmd.CombinedOutput()
	if err != nil {
		if msg := strings.TrimSpace(string(out)); msg != "" {
			return fmt.Errorf("%v: %s", err, msg)
		}
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return fmt.Errorf("%s", unix.ErrnoName(errno))
		}
		return err
	}
	return nil
}

// selfExe is the running binary, even after a package upgrade replaced
// the file on disk: guards must speak the supervisor's protocol.
const selfExe = "/proc/self/exe"

// hostPIDOf translates pid, a child of this process numbered in this
// process's PID namespace, to its number in the namespace of the mounted
// /proc (the supervisor's, the host's): every pid that leaves a guard
// is a host pid, or a signal sent with it would hit an unrelated
// process. It looks among the children of this process (as /proc numbers
// them) for the one whose NSpid ends with pid: those the kernel lists in
// /proc/self/task/*/children, else (a kernel without that file) those a
// scan of every process finds.
func hostPIDOf(pid int) (int, error) {
	if kids, _ := filepath.Glob("/proc/self/task/*/children"); len(kids) > 0 {
		for _, k := range kids {
			b, _ := os.ReadFile(k)
			for _, f := range strings.Fields(string(b)) {
				c, err := strconv.Atoi(f)
				if err != nil {
					continue
				}
				if ns, err := readNSpid(c); err == nil && len(ns) > 0 && ns[len(ns)-1] == pid {
					return ns[0], nil
				}
			}
		}
	}
	selfHost, err := procSelfPID()
	if err != nil {
		return 0, err
	}
	all, err := listProcs()
	if err != nil {
		return 0, err
	}
	for _, s := range all {
		if s.PPID != selfHost {
			continue
		}
		ns, err := readNSpid(s.PID)
		if err != nil || len(ns) == 0 {
			continue
		}
		if ns[len(ns)-1] == pid {
			return ns[0], nil
		}
	}
	return 0, fmt.Errorf("worker: pid %d not found among the children of %d in /proc", pid, selfHost)
}

// procSelfPID returns this process's pid as the mounted /proc numbers it.
func procSelfPID() (int, error) {
	target, err := os.Readlink("/proc/self")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(target)
}

// readNSpid returns the NSpid line of /proc/<pid>/status: the pid in the
// namespace of the mounted /proc first, then in each nested one.
func readNSpid(pid int) ([]int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil, err
	}
	return parseNSpid(b)
}

// parseNSpid parses the NSpid line of a /proc/<pid>/status file.
func parseNSpid(status []byte) ([]int, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "NSpid:")
		if !ok {
			continue
		}
		var out []int
		for _, f := range strings.Fields(rest) {
			n, err := strconv.Atoi(f)
			if err != nil {
				return nil, fmt.Errorf("worker: malformed NSpid %q", rest)
			}
			out = append(out, n)
		}
		return out, nil
	}
	return nil, errors.New("worker: no NSpid line (kernel older than 4.1?)")
}

// killNamespace SIGKILLs every process of the guard's PID namespace but
// the guard itself (kill(-1) from a namespace's init reaches exactly
// those): the containment's own kill, with no /proc scan.
func killNamespace() {
	_ = unix.Kill(-1, unix.SIGKILL)
}
