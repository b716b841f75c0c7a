package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/election"
	"github.com/regentd/regent/internal/etcdserver"
	"github.com/regentd/regent/worker"
)

var demoQueues = []string{"emails", "reports"}

func newDemoCmd() *cobra.Command {
	var keep bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Show regent on one machine: embedded etcd, three replicas, a failover",
		Long: `Start an embedded etcd and three regent replicas as separate processes, with a
sample worker on two queues; print the status table; SIGKILL the leader of one
queue and print the failover as it happens, with the time to the new leader's
first worker; print the new status table; then stop everything and exit 0.
Nothing is left behind. With --keep the cluster stays up until Ctrl-C.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runDemo(ctx, cmd.OutOrStdout(), keep)
		},
	}
	cmd.Flags().BoolVar(&keep, "keep", false, "leave the cluster up until Ctrl-C")
	return cmd
}

// newDemoWorkerCmd is the sample worker of the demo: it appends a line
// per tick to $REGENT_DEMO_OUT until SIGTERM.
func newDemoWorkerCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "demo-worker",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			f, err := os.OpenFile(os.Getenv("REGENT_DEMO_OUT"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				return err
			}
			defer f.Close()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				line := fmt.Sprintf("%s %s %s %d %d\n", os.Getenv("REGENT_QUEUE"), os.Getenv("REGENT_NODE"),
					os.Getenv("REGENT_TERM"), os.Getpid(), time.Now().UnixNano())
				if _, err := f.WriteString(line); err != nil {
					return err
				}
				select {
				case <-ctx.Done():
					return nil
				case <-tick.C:
				}
			}
		},
	}
}

type demoReplica struct {
	node string
	cmd  *exec.Cmd
	done chan struct{}
}

func runDemo(ctx context.Context, out io.Writer, keep bool) error {
	d := &demo{out: out, start: time.Now(), replicas: map[string]*demoReplica{}}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	defer demoReap(ctx)()
	dir, err := os.MkdirTemp("", "regent-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	d.obsFile = filepath.Join(dir, "workers.log")
	stopEtcd, err := d.startEtcd(ctx, dir)
	if err != nil {
		return err
	}
	defer stopEtcd()
	defer d.stopReplicas()
	for i := 1; i <= 3; i++ {
		if err := d.startReplica(exe, fmt.Sprintf("replica-%d", i)); err != nil {
			return err
		}
	}
	b, closeB, err := d.openBackend(ctx)
	if err != nil {
		return err
	}
	defer closeB()
	if err := d.failover(ctx, b); err != nil {
		return err
	}
	if keep {
		d.say("cluster left up; try: regent status --watch --cluster demo --etcd-endpoints %s   (Ctrl-C here stops everything)", d.endpoint)
		<-ctx.Done()
	}
	d.say("stopping replicas and etcd")
	return nil
}

// demo is one run of `regent demo`: an embedded etcd, three replicas, and
// what it tells the user.
type demo struct {
	out      io.Writer
	start    time.Time
	endpoint string
	obsFile  string
	replicas map[string]*demoReplica
}

// say prints a line stamped with the time since the demo began.
func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, "[%5.1fs] %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

// demoReap reaps the guards of the replica the demo kills (they
// re-parent to us); the returned function stops it.
func demoReap(ctx context.Context) (stop func()) {
	if becomeSubreaper() != nil {
		return func() {}
	}
	reaper := worker.NewReaper()
	rctx, stopReaper := context.WithCancel(context.WithoutCancel(ctx))
	reaperDone := make(chan struct{})
	go func() { defer close(reaperDone); _ = reaper.Run(rctx, 100*time.Millisecond) }()
	return func() { stopReaper(); <-reaperDone; reaper.ReapOnce() }
}

// startEtcd starts the embedded etcd in dir.
func (d *demo) startEtcd(ctx context.Context, dir string) (stop func(), err error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	d.say("starting an embedded etcd on 127.0.0.1:%d", port)
	srv, err := etcdserver.Start(ctx, etcdserver.Config{
		Dir: filepath.Join(dir, "etcd"), Name: "demo",
		ClientURL: fmt.Sprintf("http://127.0.0.1:%d", port), PeerURL: "http://127.0.0.1:0",
		UnsafeNoFsync: true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: %w", err)
	}
	d.endpoint = srv.Endpoints()[0]
	return srv.Stop, nil
}

// startReplica starts `regent run` as node, with the demo worker.
func (d *demo) startReplica(exe, node string) error {
	args := []string{"run", "--etcd-endpoints", d.endpoint, "--cluster", "demo", "--node-id", node,
		"--lease-ttl", "2s", "--http-addr", "", "--log-level", "warn", "--stop-timeout", "1s", "--concurrency", "2"}
	for _, q := range demoQueues {
		args = append(args, "--queue", q)
	}
	args = append(args, "--", exe, "demo-worker")
	c := exec.Command(exe, args...)
	c.Env = append(os.Environ(), "REGENT_DEMO_OUT="+d.obsFile)
	c.Stdout, c.Stderr = io.Discard, os.Stderr
	if err := c.Start(); err != nil {
		return err
	}
	r := &demoReplica{node: node, cmd: c, done: make(chan struct{})}
	go func() { _ = c.Wait(); close(r.done) }()
	d.replicas[node] = r
	d.say("started %s (pid %d) campaigning for %s", node, c.Process.Pid, strings.Join(demoQueues, ", "))
	return nil
}

// stopReplicas stops the replicas still running: SIGTERM, then SIGKILL
// after 10 s.
func (d *demo) stopReplicas() {
	for _, r := range d.replicas {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, r := range d.replicas {
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			_ = r.cmd.Process.Kill()
			<-r.done
		}
	}
}

// openBackend opens the read-only backend the demo watches through.
func (d *demo) openBackend(ctx context.Context) (election.Backend, func(), error) {
	cfg := &config.Config{Cluster: "demo", Backend: config.BackendEtcd, NodeID: "demo-status",
		Etcd: config.EtcdConfig{Endpoints: []string{d.endpoint}, DialTimeout: 5 * time.Second}, LeaseTTL: 2 * time.Second}
	log := newLogger(config.LogConfig{Level: "error", Format: "text"}, os.Stderr)
	b, err := openBackend(ctx, cfg, electionOptions(cfg, true), log)
	if err != nil {
		return nil, nil, err
	}
	return b, func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = b.Close(cctx)
	}, nil
}

// failover waits for every queue's leader and workers, SIGKILLs the
// leader of the first queue and shows the takeover.
func (d *demo) failover(ctx context.Context, b election.Backend) error {
	leaders, err := demoWaitLeaders(ctx, b, nil, 20*time.Second)
	if err != nil {
		return err
	}
	for _, q := range demoQueues {
		d.say("%s is led by %s (term %d)", q, leaders[q].Node, leaders[q].Term)
	}
	if err := demoWaitWorkers(ctx, b, "", 20*time.Second); err != nil {
		return err
	}
	if err := demoPrintStatus(ctx, b, d.out); err != nil {
		return err
	}
	victim := leaders[demoQueues[0]]
	d.say("SIGKILL %s, the leader of %s (term %d)", victim.Node, victim.Queue, victim.Term)
	killedAt := time.Now()
	_ = d.replicas[victim.Node].cmd.Process.Kill()
	<-d.replicas[victim.Node].done
	delete(d.replicas, victim.Node)
	d.say("%s is dead; its worker guards kill its workers on pipe EOF", victim.Node)

	first, node, term, err := demoWaitNewTerm(ctx, d.obsFile, victim.Queue, victim.Term, 20*time.Second)
	if err != nil {
		return err
	}
	d.say("new leader %s (term %d): first worker line %s after the kill", node, term, first.Sub(killedAt).Round(time.Millisecond))
	if _, err := demoWaitLeaders(ctx, b, map[string]int64{victim.Queue: victim.Term}, 20*time.Second); err != nil {
		return err
	}
	d.say("waiting for %s's member record to expire with its lease", victim.Node)
	if err := demoWaitWorkers(ctx, b, victim.Node, 20*time.Second); err != nil {
		return err
	}
	return demoPrintStatus(ctx, b, d.out)
}

// demoWaitLeaders waits until every demo queue has a leader whose term is
// above after[queue].
func demoWaitLeaders(ctx context.Context, b election.Backend, after map[string]int64, d time.Duration) (map[string]election.LeaderRecord, error) {
	deadline := time.Now().Add(d)
	for {
		out := map[string]election.LeaderRecord{}
		for _, q := range demoQueues {
			if r, err := b.Leader(ctx, q); err == nil && r.Term > after[q] {
				out[q] = r
			}
		}
		if len(out) == len(demoQueues) {
			return out, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("demo: no leader for every queue within %s", d)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// demoWaitNewTerm waits for the first worker line of queue with a term
// above old and returns its time, node and term.
func demoWaitNewTerm(ctx context.Context, file, queue string, old int64, d time.Duration) (time.Time, string, int64, error) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if f, err := os.Open(file); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				p := strings.Fields(sc.Text())
				if len(p) != 5 || p[0] != queue {
					continue
				}
				term, _ := strconv.ParseInt(p[2], 10, 64)
				ns, _ := strconv.ParseInt(p[4], 10, 64)
				if term > old {
					f.Close()
					return time.Unix(0, ns), p[1], term, nil
				}
			}
			f.Close()
		}
		select {
		case <-ctx.Done():
			return time.Time{}, "", 0, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return time.Time{}, "", 0, errors.New("demo: no new leader's worker within the bound")
}

// demoWaitWorkers waits until every queue's leader runs all its workers
// and node (if set) is no longer a member.
func demoWaitWorkers(ctx context.Context, b election.Backend, gone string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		doc, err := buildStatus(ctx, b, "demo", "")
		if err == nil && demoSettled(doc, gone) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: the cluster did not settle within %s", d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func demoSettled(doc *statusDoc, gone string) bool {
	if len(doc.Queues) != len(demoQueues) {
		return false
	}
	for _, q := range doc.Queues {
		if q.Leader == nil || len(q.Leader.Workers) == 0 {
			return false
		}
		for _, w := range q.Leader.Workers {
			if w.State != "running" {
				return false
			}
		}
		for _, f := range q.Followers {
			if f.Node == gone {
				return false
			}
		}
	}
	return true
}

func demoPrintStatus(ctx context.Context, b election.Backend, out io.Writer) error {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	doc, err := buildStatus(rctx, b, "demo", "")
	if err != nil {
		return err
	}
	fmt.Fprintln(out)
	writeHuman(out, doc)
	fmt.Fprintln(out)
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
