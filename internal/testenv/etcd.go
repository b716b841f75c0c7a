package testenv

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/regentd/regent/internal/etcdserver"
)

// EnvEtcdEndpoints names the environment variable that, when set (comma
// separated client URLs), makes Etcd return those endpoints instead of
// starting a server.
const EnvEtcdEndpoints = "REGENT_TEST_ETCD_ENDPOINTS"

const (
	roleEtcd         = "etcd"
	envEtcdDir       = "REGENT_TESTENV_ETCD_DIR"
	envEtcdClientURL = "REGENT_TESTENV_ETCD_CLIENT_URL"
	envEtcdCertFile  = "REGENT_TESTENV_ETCD_CERT_FILE"
	envEtcdKeyFile   = "REGENT_TESTENV_ETCD_KEY_FILE"
	envEtcdCAFile    = "REGENT_TESTENV_ETCD_CA_FILE"
	etcdReadyPrefix  = "etcd ready "
	// etcdStartTimeout bounds one start of the helper, from exec to a
	// successful status call (a race-enabled binary is slow to start).
	etcdStartTimeout = 60 * time.Second
)

var sharedEtcd struct {
	once      sync.Once
	endpoints []string
	err       error
}

// Etcd returns the client endpoints of the etcd member shared by every test
// of this test binary, starting it on first use, or the endpoints of
// EnvEtcdEndpoints when set. Tests must keep to their own key prefix.
func Etcd(t testing.TB) []string {
	t.Helper()
	if v := os.Getenv(EnvEtcdEndpoints); v != "" {
		return strings.Split(v, ",")
	}
	requireMain(t)
	sharedEtcd.once.Do(func() {
		p, err := startEtcdProc(EtcdOptions{})
		if err != nil {
			sharedEtcd.err = err
			return
		}
		sharedEtcd.endpoints = p.Endpoints()
		addSharedStop(p.destroy)
	})
	if sharedEtcd.err != nil {
		t.Fatalf("shared etcd: %v", sharedEtcd.err)
	}
	return append([]string(nil), sharedEtcd.endpoints...)
}

// EtcdProc is a private single-member etcd in its own process that a test
// may stop, kill and restart. Its endpoints stay the same across restarts.
// Methods must be called from the test's goroutine.
type EtcdProc struct {
	root      string // temporary dir: data/ and etcd.log
	clientURL string // the client URL to bind; its port is fixed after the first start
	certs     *Certs // TLS with client certificates (nil: plain http)

	mu        sync.Mutex
	proc      *reexec
	endpoints []string
}

// NewEtcd starts a private etcd member, stopped and removed at the end of
// the test.
func NewEtcd(t testing.TB) *EtcdProc {
	t.Helper()
	return NewEtcdWith(t, EtcdOptions{})
}

// EtcdOptions tunes a private member started by NewEtcdWith.
type EtcdOptions struct {
	// TLS, when set, makes the member serve clients over TLS only
	// (https:// endpoints) with Certs.ServerCert, and require a client
	// certificate signed by Certs.CAFile (etcd's --client-cert-auth).
	// Authentication (users, roles, auth enable) is the test's to set up,
	// with a client from Client.
	TLS *Certs
}

// NewEtcdWith starts a private etcd member with opts, stopped and removed
// at the end of the test.
func NewEtcdWith(t testing.TB, opts EtcdOptions) *EtcdProc {
	t.Helper()
	requireMain(t)
	p, err := startEtcdProc(opts)
	if err != nil {
		t.Fatalf("etcd: %v", err)
	}
	t.Cleanup(p.destroy)
	return p
}

// Endpoints returns the member's client URLs.
func (p *EtcdProc) Endpoints() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.endpoints...)
}

// MetricsURL returns the URL of the member's Prometheus metrics. etcd
// serves /metrics on its client URL (HTTP/1 beside gRPC), so scraping it
// needs no listener of its own and counts no gRPC request.
func (p *EtcdProc) MetricsURL() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.endpoints[0] + "/metrics"
}

// PID returns the process id of the running member, or 0.
func (p *EtcdProc) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil || p.proc.exited() {
		return 0
	}
	return p.proc.pid()
}

// Stop stops the member gracefully (it may take etcd's request timeout, a
// few seconds, while clients keep watches open) and waits for its end.
func (p *EtcdProc) Stop(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.stopLocked(syscall.SIGTERM); err != nil {
		t.Error(err)
	}
}

// Kill kills the member with SIGKILL and waits for its end. Data written
// before stays (the host did not crash).
func (p *EtcdProc) Kill(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.stopLocked(syscall.SIGKILL)
}

// Restart starts the member again on the same data and endpoints, after
// stopping it first if it still runs.
func (p *EtcdProc) Restart(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.stopLocked(syscall.SIGTERM); err != nil {
		t.Error(err)
	}
	if err := p.startLocked(); err != nil {
		t.Fatalf("etcd restart: %v", err)
	}
}

// Client returns a client of the member (with the test's client
// certificate on a TLS member), logged in as user when user is not
// empty, closed at the end of the test.
func (p *EtcdProc) Client(t testing.TB, user, password string) *clientv3.Client {
	t.Helper()
	tlsCfg, err := p.clientTLS()
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   p.Endpoints(),
		DialTimeout: 5 * time.Second,
		TLS:         tlsCfg,
		Username:    user,
		Password:    password,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// clientTLS is the client TLS configuration of the member (nil: plain).
func (p *EtcdProc) clientTLS() (*tls.Config, error) {
	if p.certs == nil {
		return nil, nil
	}
	return p.certs.ClientTLS()
}

// startEtcdProc creates the directory and starts the member.
func startEtcdProc(opts EtcdOptions) (*EtcdProc, error) {
	root, err := newServerDir("regent-etcd-")
	if err != nil {
		return nil, err
	}
	p := &EtcdProc{root: root, clientURL: "http://127.0.0.1:0", certs: opts.TLS}
	if p.certs != nil {
		p.clientURL = "https://127.0.0.1:0"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.startLocked(); err != nil {
		_ = os.RemoveAll(root)
		return nil, err
	}
	return p, nil
}

// startLocked runs the helper process and waits until the member serves.
func (p *EtcdProc) startLocked() error {
	env := []string{
		EnvRole + "=" + roleEtcd,
		envEtcdDir + "=" + filepath.Join(p.root, "data"),
		envEtcdClientURL + "=" + p.clientURL,
	}
	if p.certs != nil {
		env = append(env, envEtcdCertFile+"="+p.certs.ServerCert, envEtcdKeyFile+"="+p.certs.ServerKey,
			envEtcdCAFile+"="+p.certs.CAFile)
	}
	tlsCfg, err := p.clientTLS()
	if err != nil {
		return fmt.Errorf("testenv: etcd client TLS: %w", err)
	}
	r, line, err := startReexec("etcd", env, nil, filepath.Join(p.root, "etcd.log"), etcdReadyPrefix, etcdStartTimeout)
	if err != nil {
		return err
	}
	endpoints := strings.Split(line, ",")
	if err := poll(etcdStartTimeout, r.done, func(ctx context.Context) error {
		return etcdStatus(ctx, endpoints, tlsCfg)
	}); err != nil {
		r.kill()
		return r.failure("%v", err)
	}
	p.proc, p.endpoints = r, endpoints
	p.clientURL = endpoints[0]
	return nil
}

// stopLocked ends the helper with sig (no-op if it does not run).
func (p *EtcdProc) stopLocked(sig syscall.Signal) error {
	if p.proc == nil {
		return nil
	}
	proc := p.proc
	p.proc = nil
	if sig == syscall.SIGKILL {
		proc.kill()
		return nil
	}
	return proc.stop(sig)
}

// destroy kills the member and removes its directory.
func (p *EtcdProc) destroy() {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.stopLocked(syscall.SIGKILL)
	_ = os.RemoveAll(p.root)
}

// etcdStatus asks every endpoint for its status (over TLS with tlsCfg).
// The status call needs no permission, with auth enabled or not.
func etcdStatus(ctx context.Context, endpoints []string, tlsCfg *tls.Config) error {
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: time.Second,
		TLS:         tlsCfg,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return err
	}
	defer c.Close()
	for _, ep := range endpoints {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Status(sctx, ep)
		cancel()
		if err != nil {
			return fmt.Errorf("status of %s: %w", ep, err)
		}
	}
	return nil
}

// runEtcdRole is the helper process: it runs the member until SIGTERM,
// SIGINT or EOF on stdin (the test binary ended), then stops it.
func runEtcdRole() int {
	log := hclog.New(&hclog.LoggerOptions{Name: "etcd", Output: os.Stderr, Level: hclog.Warn})
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	cfg := etcdserver.Config{
		Dir:           os.Getenv(envEtcdDir),
		ClientURL:     os.Getenv(envEtcdClientURL),
		PeerURL:       "http://127.0.0.1:0",
		UnsafeNoFsync: true,
		Logger:        log,
		CertFile:      os.Getenv(envEtcdCertFile),
		KeyFile:       os.Getenv(envEtcdKeyFile),
		TrustedCAFile: os.Getenv(envEtcdCAFile),
		// The tests' users need no strong hashes; every authentication
		// (each client's connect) hashes once.
		BcryptCost: 4,
	}
	applyMemberEnv(&cfg) // members of an EtcdCluster
	srv, err := etcdserver.Start(ctx, cfg)
	if err != nil {
		log.Error("cannot start etcd", "error", err)
		return 1
	}
	defer srv.Stop()
	fmt.Printf("%s%s\n", etcdReadyPrefix, strings.Join(srv.Endpoints(), ","))

	// The reader ends at EOF, or with the process.
	stdinClosed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stdinClosed)
	}()
	select {
	case <-ctx.Done():
	case <-stdinClosed:
	case <-srv.Stopped():
		log.Error("etcd stopped on its own")
		return 1
	case err := <-srv.Err():
		log.Error("etcd failed", "error", err)
		return 1
	}
	return 0
}
