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
	// deadline is the initial absolute deadline, CLOCK_MONOTONIC ns.
	deadline int64
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
	fs.Int64Var(&o.deadline, "deadline-ns", 0, "initial deadline, absolute CLOCK_MONOTONIC nanoseconds (required)")
	fs.Var(metaFlag(o.meta), "meta", "key=value handed to the orphan hook (repeatable; visible in ps: no secrets)")
	fs.StringVar(&o.groupLock, "group-lock", "", "lock file shared by the guards of one pool")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.argv = fs.Args()
	if o.deadline <= 0 {
		return o, errors.New("regent guard: -deadline-ns is required")
	}
	if len(o.argv) == 0 {
		return o, errors.New("regent guard: no command after --")
	}
	return o, nil
}

// guardArgs builds the guard's argument vector (after the executable and
// the caller's fixed GuardArgs).
func guardArgs(deadline int64, meta map[string]string, groupLock string, argv []string) []string {
	out := []string{"-deadline-ns", strconv.FormatInt(deadline, 10)}
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
	out = append(out, "--")
	return append(out, argv...)
}
