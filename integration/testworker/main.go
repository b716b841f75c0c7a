// Command testworker is a worker for regent's tests. Every -interval it
// appends one line to -out (or $REGENT_TEST_OUT):
//
//	term node pid unix-nano-timestamp queue worker
//
// from REGENT_TERM, REGENT_NODE, REGENT_QUEUE and REGENT_WORKER ("-" when
// unset), and its pid as the mounted /proc numbers it (the host's, also
// in a guard's PID namespace, where successive workers often get the same
// small pid), with one write(2) per line on an O_APPEND file, so lines of
// concurrent workers never interleave. It touches $REGENT_HEARTBEAT_FILE
// at each tick when that is set. Options make it misbehave: allocate
// memory, crash after a while, stop its heartbeat, ignore SIGTERM, and
// spawn a child that keeps running on its own.
//
// On SIGTERM (unless -ignore-term) it prints "testworker terminating" and
// exits 0. It prints "testworker pid N" at start and "testworker child pid
// N" for a spawned child, on stdout.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

func main() {
	os.Exit(run())
}

type options struct {
	out            string
	interval       time.Duration
	allocMB        int
	exitAfter      time.Duration
	exitCode       int
	noHeartbeat    bool
	heartbeatFor   time.Duration
	ignoreTerm     bool
	spawnChild     bool
	childSetsid    bool
	childIgnoreSig bool
	childAllocMB   int
	isChild        bool
}

func run() int {
	var o options
	flag.StringVar(&o.out, "out", os.Getenv("REGENT_TEST_OUT"), "file to append lines to")
	flag.DurationVar(&o.interval, "interval", 10*time.Millisecond, "time between lines")
	flag.IntVar(&o.allocMB, "alloc-mb", 0, "allocate and touch this many MiB at start")
	flag.DurationVar(&o.exitAfter, "exit-after", 0, "exit after this long (0: never)")
	flag.IntVar(&o.exitCode, "exit-code", 1, "exit code used with -exit-after")
	flag.BoolVar(&o.noHeartbeat, "no-heartbeat", false, "never touch REGENT_HEARTBEAT_FILE")
	flag.DurationVar(&o.heartbeatFor, "heartbeat-for", 0, "stop touching the heartbeat after this long (0: never stop)")
	flag.BoolVar(&o.ignoreTerm, "ignore-term", false, "ignore SIGTERM")
	flag.BoolVar(&o.spawnChild, "spawn-child", false, "start a child that keeps running by itself")
	flag.BoolVar(&o.childSetsid, "child-setsid", false, "start the child in a new session (out of the process group)")
	flag.BoolVar(&o.childIgnoreSig, "child-ignore-term", false, "the child ignores SIGTERM")
	flag.IntVar(&o.childAllocMB, "child-alloc-mb", 0, "the child allocates and touches this many MiB")
	flag.BoolVar(&o.isChild, "child", false, "run as a spawned child (internal)")
	flag.Parse()

	start := time.Now()
	if o.ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
	}
	term := make(chan os.Signal, 1)
	if !o.ignoreTerm {
		signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	}
	fmt.Printf("testworker pid %d\n", hostPID())

	var mem []byte
	if o.allocMB > 0 {
		mem = make([]byte, o.allocMB<<20)
		for i := 0; i < len(mem); i += 4096 {
			mem[i] = 1
		}
	}
	if o.spawnChild {
		pid, err := spawnChild(o)
		if err != nil {
			fmt.Fprintf(os.Stderr, "testworker: spawn child: %v\n", err)
			return 3
		}
		fmt.Printf("testworker child pid %d\n", pid)
	}

	var out *os.File
	if o.out != "" {
		f, err := os.OpenFile(o.out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			fmt.Fprintf(os.Stderr, "testworker: %v\n", err)
			return 3
		}
		defer f.Close()
		out = f
	}
	hb := os.Getenv("REGENT_HEARTBEAT_FILE")
	if o.noHeartbeat || o.isChild {
		hb = ""
	}
	var exit <-chan time.Time
	if o.exitAfter > 0 {
		exit = time.After(o.exitAfter)
	}
	pid := hostPID()
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	for {
		select {
		case <-term:
			fmt.Println("testworker terminating")
			return 0
		case <-exit:
			fmt.Printf("testworker exiting with %d\n", o.exitCode)
			return o.exitCode
		case now := <-tick.C:
			if out != nil {
				line := fmt.Sprintf("%s %s %d %d %s %s\n", env("REGENT_TERM"), env("REGENT_NODE"),
					pid, now.UnixNano(), env("REGENT_QUEUE"), env("REGENT_WORKER"))
				if _, err := out.WriteString(line); err != nil {
					fmt.Fprintf(os.Stderr, "testworker: %v\n", err)
					return 3
				}
			}
			if hb != "" && (o.heartbeatFor == 0 || now.Sub(start) < o.heartbeatFor) {
				touch(hb, now)
			}
		}
		runtime.KeepAlive(mem)
	}
}

// spawnChild starts this program again as a child that runs until killed.
func spawnChild(o options) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	args := []string{"-child", "-interval", o.interval.String()}
	if o.out != "" {
		args = append(args, "-out", o.out)
	}
	if o.childIgnoreSig {
		args = append(args, "-ignore-term")
	}
	if o.childAllocMB > 0 {
		args = append(args, "-alloc-mb", strconv.Itoa(o.childAllocMB))
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	if o.childSetsid {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	pid := cmd.Process.Pid
	// Not waited for: the child is meant to outlive this process.
	_ = cmd.Process.Release()
	return pid, nil
}

func touch(path string, now time.Time) {
	if err := os.Chtimes(path, now, now); err != nil {
		if f, err := os.Create(path); err == nil {
			f.Close()
		}
	}
}

func env(k string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return "-"
}

// hostPID returns this process's pid as the mounted /proc numbers it: the
// host's, even inside the PID namespace of regent's containment, where
// os.Getpid() is small and repeats from one guard's namespace to the
// next (the observer tells worker processes apart by pid).
func hostPID() int {
	if target, err := os.Readlink("/proc/self"); err == nil {
		if n, err := strconv.Atoi(target); err == nil {
			return n
		}
	}
	return os.Getpid()
}
