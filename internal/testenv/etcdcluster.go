package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/regentd/regent/internal/etcdserver"
)

// Environment of a member of an EtcdCluster (read by the etcd helper role
// in addition to its data dir and client URL).
const (
	envEtcdName           = "REGENT_TESTENV_ETCD_NAME"
	envEtcdPeerURL        = "REGENT_TESTENV_ETCD_PEER_URL"
	envEtcdInitialCluster = "REGENT_TESTENV_ETCD_INITIAL_CLUSTER"
)

// etcdClusterAttempts is how many sets of ports are tried when one was
// taken between FreePort and the members' bind.
const etcdClusterAttempts = 3

// applyMemberEnv completes the helper's config with the member name, peer
// URL and initial cluster of an EtcdCluster member, when set.
func applyMemberEnv(cfg *etcdserver.Config) {
	if v := os.Getenv(envEtcdName); v != "" {
		cfg.Name = v
	}
	if v := os.Getenv(envEtcdPeerURL); v != "" {
		cfg.PeerURL = v
	}
	if v := os.Getenv(envEtcdInitialCluster); v != "" {
		cfg.InitialCluster = v
	}
}

// EtcdCluster is a private multi-member etcd cluster: every member runs in
// its own helper process (a re-executed test binary) with its own data
// directory and fixed loopback client and peer ports, so a test can kill,
// stop and restart members one by one or all together. Members keep their
// endpoints across restarts. Methods may be called from any goroutine;
// they serialise.
type EtcdCluster struct {
	root string // temporary dir: one data dir and log per member

	mu      sync.Mutex
	members []*clusterMember
}

// clusterMember is one member; proc is nil while it is down.
type clusterMember struct {
	name      string
	dir       string
	log       string
	clientURL string
	peerURL   string
	initial   string // the initial cluster, "name=peerURL,..."
	proc      *reexec
}

// NewEtcdCluster starts a private cluster of n members (n >= 1), waits
// until every member serves, and destroys it at the end of the test.
func NewEtcdCluster(t testing.TB, n int) *EtcdCluster {
	t.Helper()
	requireMain(t)
	if n < 1 {
		t.Fatalf("testenv: etcd cluster of %d members", n)
	}
	root, err := newServerDir("regent-etcdc-")
	if err != nil {
		t.Fatal(err)
	}
	c := &EtcdCluster{root: root}
	t.Cleanup(c.destroy)
	c.mu.Lock()
	defer c.mu.Unlock()
	for attempt := 1; ; attempt++ {
		err := c.bootstrapLocked(attempt, n)
		if err == nil {
			return c
		}
		if attempt == etcdClusterAttempts || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("etcd cluster: %v", err)
		}
	}
}

// bootstrapLocked picks ports, writes the members' configs and starts them
// all at once (a member becomes ready only with a quorum).
func (c *EtcdCluster) bootstrapLocked(attempt, n int) error {
	c.members = nil
	var initial []string
	for i := 0; i < n; i++ {
		cp, err := freePort()
		if err != nil {
			return err
		}
		pp, err := freePort()
		if err != nil {
			return err
		}
		name := "m" + strconv.Itoa(i)
		base := filepath.Join(c.root, fmt.Sprintf("try%d-%s", attempt, name))
		m := &clusterMember{
			name:      name,
			dir:       base + ".data",
			log:       base + ".log",
			clientURL: "http://127.0.0.1:" + strconv.Itoa(cp),
			peerURL:   "http://127.0.0.1:" + strconv.Itoa(pp),
		}
		initial = append(initial, name+"="+m.peerURL)
		c.members = append(c.members, m)
	}
	all := make([]int, n)
	for i, m := range c.members {
		m.initial = strings.Join(initial, ",")
		all[i] = i
	}
	return c.startLocked(all)
}

// startLocked starts the given (stopped) members concurrently and waits
// until each of them answers a status request. On failure it kills the
// members it started.
func (c *EtcdCluster) startLocked(idx []int) error {
	errs := make([]error, len(idx))
	var wg sync.WaitGroup
	for k, i := range idx {
		m := c.members[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[k] = m.start()
		}()
	}
	wg.Wait()
	err := errors.Join(errs...)
	if err == nil {
		for _, i := range idx {
			m := c.members[i]
			if err = poll(etcdStartTimeout, m.proc.done, func(ctx context.Context) error {
				return etcdStatus(ctx, []string{m.clientURL}, nil)
			}); err != nil {
				err = m.proc.failure("%v", err)
				break
			}
		}
	}
	if err != nil {
		for _, i := range idx {
			c.members[i].stop(syscall.SIGKILL)
		}
	}
	return err
}

// start runs the member's helper process until it reports ready.
func (m *clusterMember) start() error {
	r, line, err := startReexec("etcd "+m.name, []string{
		EnvRole + "=" + roleEtcd,
		envEtcdDir + "=" + m.dir,
		envEtcdClientURL + "=" + m.clientURL,
		envEtcdName + "=" + m.name,
		envEtcdPeerURL + "=" + m.peerURL,
		envEtcdInitialCluster + "=" + m.initial,
	}, nil, m.log, etcdReadyPrefix, etcdStartTimeout)
	if err != nil {
		return err
	}
	if line != m.clientURL {
		r.kill()
		return fmt.Errorf("testenv: etcd %s serves %s, want %s", m.name, line, m.clientURL)
	}
	m.proc = r
	return nil
}

// stop ends the member's process with sig (SIGKILL: at once; otherwise
// gracefully, bounded by stopGrace). No-op if it is down.
func (m *clusterMember) stop(sig syscall.Signal) error {
	if m.proc == nil {
		return nil
	}
	p := m.proc
	m.proc = nil
	if sig == syscall.SIGKILL {
		p.kill()
		return nil
	}
	return p.stop(sig)
}

// Size returns the number of members.
func (c *EtcdCluster) Size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.members)
}

// Endpoints returns every member's client URL, running or not, in member
// order.
func (c *EtcdCluster) Endpoints() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.members))
	for i, m := range c.members {
		out[i] = m.clientURL
	}
	return out
}

// Running reports whether member i's process runs.
func (c *EtcdCluster) Running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[i]
	return m.proc != nil && !m.proc.exited()
}

// Kill kills member i with SIGKILL and waits for its end. Its data stays.
func (c *EtcdCluster) Kill(t testing.TB, i int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.members[i].stop(syscall.SIGKILL)
}

// Stop stops member i gracefully and waits for its end.
func (c *EtcdCluster) Stop(t testing.TB, i int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.members[i].stop(syscall.SIGTERM); err != nil {
		t.Error(err)
	}
}

// Restart starts member i again on its data and endpoints (stopping it
// first if it runs) and waits until it serves; the others must form a
// quorum with it.
func (c *EtcdCluster) Restart(t testing.TB, i int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.members[i].stop(syscall.SIGTERM); err != nil {
		t.Error(err)
	}
	if err := c.startLocked([]int{i}); err != nil {
		t.Fatalf("etcd restart of %s: %v", c.members[i].name, err)
	}
}

// StopAll stops every running member gracefully, concurrently, and waits
// for their end.
func (c *EtcdCluster) StopAll(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.stopAllLocked(syscall.SIGTERM); err != nil {
		t.Error(err)
	}
}

// KillAll kills every running member with SIGKILL and waits for their end.
func (c *EtcdCluster) KillAll(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.stopAllLocked(syscall.SIGKILL)
}

// RestartAll stops every running member, then starts them all together
// on their data and endpoints and waits until each serves.
func (c *EtcdCluster) RestartAll(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.stopAllLocked(syscall.SIGTERM); err != nil {
		t.Error(err)
	}
	all := make([]int, len(c.members))
	for i := range all {
		all[i] = i
	}
	if err := c.startLocked(all); err != nil {
		t.Fatalf("etcd cluster restart: %v", err)
	}
}

// StartStopped starts every member that is down, together, and waits
// until each serves.
func (c *EtcdCluster) StartStopped(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var down []int
	for i, m := range c.members {
		if m.proc == nil {
			down = append(down, i)
		}
	}
	if len(down) == 0 {
		return
	}
	if err := c.startLocked(down); err != nil {
		t.Fatalf("etcd cluster start: %v", err)
	}
}

func (c *EtcdCluster) stopAllLocked(sig syscall.Signal) error {
	errs := make([]error, len(c.members))
	var wg sync.WaitGroup
	for i, m := range c.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.stop(sig)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Leader returns the index of the member that leads the raft group, as
// the running members report it, or -1 if none knows a leader (an
// election in progress, no quorum) or ctx ends first.
func (c *EtcdCluster) Leader(ctx context.Context) int {
	c.mu.Lock()
	var eps []string
	for _, m := range c.members {
		if m.proc != nil && !m.proc.exited() {
			eps = append(eps, m.clientURL)
		}
	}
	urls := make([]string, len(c.members))
	for i, m := range c.members {
		urls[i] = m.clientURL
	}
	c.mu.Unlock()
	if len(eps) == 0 {
		return -1
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		return -1
	}
	defer cli.Close()
	for _, ep := range eps {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := cli.Status(sctx, ep)
		cancel()
		if err != nil || resp.Leader == 0 || resp.Header == nil {
			continue
		}
		if resp.Leader == resp.Header.MemberId {
			for i, u := range urls {
				if u == ep {
					return i
				}
			}
		}
	}
	return -1
}

// WaitLeader polls Leader until a member leads or timeout passes (then it
// fails the test), and returns that member's index.
func (c *EtcdCluster) WaitLeader(t testing.TB, timeout time.Duration) int {
	t.Helper()
	leader := -1
	err := poll(timeout, nil, func(ctx context.Context) error {
		if leader = c.Leader(ctx); leader < 0 {
			return errors.New("no member reports itself leader")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("etcd cluster: %v", err)
	}
	return leader
}

// destroy kills every member and removes the cluster's directory.
func (c *EtcdCluster) destroy() {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.stopAllLocked(syscall.SIGKILL)
	_ = os.RemoveAll(c.root)
}
