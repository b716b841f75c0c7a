package worker

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// guardOptions are the guard's command-line options.
type guardOptions struct {
	// deadline is the initial absolute deadline, CLOCK_BOOTTIME ns.
	deadline int64
	// protocol is the protocol version the supervisor speaks.
	protocol int
	// containment is how the guard was started (Containment).
	containment Containment
	// probe: only check that the containment works, then exit 0.
	probe bool
	// groupLockFD, if positive, is an inherited descriptor of groupLock
	// already holding its shared lock: the guard counts as part of its
	// pool from the moment it was forked.
	groupLockFD int
	// exeFD, if positive, is an inherited descriptor of the guard's own
	// executable, through which the supervisor exec'd it: the guard
	// closes it.
	exeFD int
	// helperFD, if positive, is an inherited descriptor of an executable
	// for the orphan hook (OrphanInfo.Helper).
	helperFD int
	// meta is opaque key=value data handed to the orphan hook.
	meta map[string]string
	// groupLock is a file every guard of one pool holds a shared flock
	// on; the orphan hook runs only in the guard that then gets it
	// exclusively, i.e. once every guard of the pool has killed its tree.
	groupLock string
	// argv is the worker command.
	argv []string
}

// metaFlag collects repeated -meta key=value flags.
type metaFlag map[string]string

func (m metaFlag) String() string { return fmt.Sprint(map[string]string(m)) }

func (m metaFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", v)
	}
	m[k] = val
	return nil
}

// parseGuardArgs parses `[flags] -- command args...`.
func parseGuardArgs(args []string, stderr io.Writer) (guardOptions, error) {
	o := guardOptions{meta: map[string]string{}}
	fs := flag.NewFlagSet("regent guard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Int64Var(&o.deadline, "deadline-ns", 0, "initial deadline, absolute CLOCK_BOOTTIME nanoseconds (required)")
	fs.IntVar(&o.protocol, "protocol", 0, "guard protocol version the supervisor speaks (required)")
	var containment string
	fs.StringVar(&containment, "containment", string(ContainmentNone), "how the guard was started: pid-namespace, user+pid-namespace or none")
	fs.BoolVar(&o.probe, "probe", false, "only check the containment and exit")
	fs.IntVar(&o.groupLockFD, "group-lock-fd", 0, "inherited descriptor holding -group-lock shared")
	fs.IntVar(&o.exeFD, "exe-fd", 0, "inherited descriptor of the guard's own executable, to close")
	fs.IntVar(&o.helperFD, "helper-fd", 0, "inherited descriptor of the orphan hook's helper executable")
	fs.Var(metaFlag(o.meta), "meta", "key=value handed to the orphan hook (repeatable; visible in ps: no secrets)")
	fs.StringVar(&o.groupLock, "group-lock", "", "lock file shared by the guards of one pool")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.argv = fs.Args()
	c, err := ParseContainment(containment)
	if err != nil || c == "" {
		return o, fmt.Errorf("regent guard: bad -containment %q", containment)
	}
	o.containment = c
	if o.probe && o.protocol == 0 {
		return o, nil
	}
	if o.protocol != GuardProtocol {
		return o, fmt.Errorf("regent guard: protocol mismatch: the supervisor speaks guard protocol %d, this binary %d "+
			"(the regent binary was replaced under a running supervisor?); restart regent", o.protocol, GuardProtocol)
	}
	if o.probe {
		return o, nil
	}
	if o.deadline <= 0 {
		return o, errors.New("regent guard: -deadline-ns is required")
	}
	if len(o.argv) == 0 {
		return o, errors.New("regent guard: no command after --")
	}
	return o, nil
}

// guardFDs are the descriptors a guard inherits beyond its pipes: each 0
// when absent.
type guardFDs struct {
	lock   int // the held group lock (guardLockFD)
	exe    int // the guard's own executable (guardExeFD)
	helper int // the orphan hook's helper executable (guardHelperFD)
}

// guardArgs builds the guard's argument vector (after the executable and
// the caller's fixed GuardArgs).
func guardArgs(deadline int64, c Containment, meta map[string]string, groupLock string, fds guardFDs, argv []string) []string {
	out := []string{"-protocol", strconv.Itoa(GuardProtocol), "-deadline-ns", strconv.FormatInt(deadline, 10),
		"-containment", string(c)}
	if fds.exe > 0 {
		out = append(out, "-exe-fd", strconv.Itoa(fds.exe))
	}
	if fds.helper > 0 {
		out = append(out, "-helper-fd", strconv.Itoa(fds.helper))
	}
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, "-meta", k+"="+meta[k])
	}
	if groupLock != "" {
		out = append(out, "-group-lock", groupLock)
	}
	if fds.lock > 0 {
		out = append(out, "-group-lock-fd", strconv.Itoa(fds.lock))
	}
	out = append(out, "--")
	return append(out, argv...)
}
