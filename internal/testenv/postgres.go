package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvPostgresURL names the environment variable that, when set (a superuser
// URL), makes Postgres return it instead of starting a server.
const EnvPostgresURL = "REGENT_TEST_POSTGRES_URL"

// EnvPostgresBin names the environment variable that overrides the
// directory of the PostgreSQL binaries (default DefaultPostgresBin).
const EnvPostgresBin = "REGENT_TEST_POSTGRES_BIN"

// DefaultPostgresBin is where Debian installs the PostgreSQL 15 binaries.
const DefaultPostgresBin = "/usr/lib/postgresql/15/bin"

// pgStartTimeout bounds one start of the server, until a query succeeds.
const pgStartTimeout = 60 * time.Second

// pgStartAttempts is how many ports are tried when the chosen one was taken
// between FreePort and the server's bind.
const pgStartAttempts = 3

var sharedPostgres struct {
	once sync.Once
	url  string
	err  error
}

// Postgres returns a superuser URL of the PostgreSQL server shared by every
// test of this test binary, starting it on first use, or EnvPostgresURL
// when set. Tests that create objects should use NewDatabase.
func Postgres(t testing.TB) string {
	t.Helper()
	if v := os.Getenv(EnvPostgresURL); v != "" {
		return v
	}
	requireMain(t)
	sharedPostgres.once.Do(func() {
		p, err := startPostgresProc(PostgresOptions{})
		if err != nil {
			sharedPostgres.err = err
			return
		}
		sharedPostgres.url = p.URL()
		addSharedStop(p.destroy)
	})
	if sharedPostgres.err != nil {
		t.Fatalf("shared postgres: %v", sharedPostgres.err)
	}
	return sharedPostgres.url
}

// NewDatabase creates a fresh database on the shared server and returns a
// superuser URL to it. The database is dropped (its sessions terminated) at
// the end of the test.
func NewDatabase(t testing.TB) string {
	t.Helper()
	return newDatabaseOn(t, Postgres(t))
}

// NewDatabase creates a fresh database on this server and returns a
// superuser URL to it, dropped at the end of the test.
func (p *PostgresProc) NewDatabase(t testing.TB) string {
	t.Helper()
	return newDatabaseOn(t, p.URL())
}

// newDatabaseOn creates a fresh database on the server of the superuser
// URL base, dropped at the end of the test.
func newDatabaseOn(t testing.TB, base string) string {
	t.Helper()
	name := "regent_test_" + randomHex(6)
	ident := pgx.Identifier{name}.Sanitize()
	if err := pgExec(base, "CREATE DATABASE "+ident); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		if err := pgExec(base, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse %s: %v", EnvPostgresURL, err)
	}
	u.Path = "/" + name
	return u.String()
}

// PostgresProc is a PostgreSQL server in its own data directory that a test
// may stop, kill and restart. Its URL stays the same across restarts.
// Methods must be called from the test's goroutine.
type PostgresProc struct {
	root      string   // temporary dir: data/, sock/, postgres.log
	maxConns  int      // max_connections
	settings  []string // extra -c settings
	fakeClock bool     // libfaketime preloaded (see StepClock)

	mu          sync.Mutex
	port        int
	proc        *child
	clockOffset time.Duration // of the wall clock, with fakeClock
}

// NewPostgres starts a private PostgreSQL server, destroyed at the end of
// the test.
func NewPostgres(t testing.TB) *PostgresProc {
	t.Helper()
	return NewPostgresWith(t, PostgresOptions{})
}

// DefaultMaxConnections is max_connections of the servers testenv starts.
const DefaultMaxConnections = 300

// PostgresOptions tunes a private server started by NewPostgresWith.
type PostgresOptions struct {
	// MaxConnections is the server's max_connections. Default
	// DefaultMaxConnections. Benchmarks that open a connection per queue
	// raise it; every connection is a server process.
	MaxConnections int
	// Settings are extra server settings, "name=value" each (postgres -c),
	// e.g. "shared_preload_libraries=pg_stat_statements".
	Settings []string
	// FakeClock preloads libfaketime (FakeTimeLib) into the server, so that
	// the test can step the server's wall clock with StepClock, and only
	// the server's. The test is skipped when the library is missing, or
	// fails under CI (see RequireFakeTime).
	FakeClock bool
	// SSL, when set, turns SSL on with Certs.ServerCert (its key copied
	// into the server's directory), sets password_encryption to
	// scram-sha-256, and replaces pg_hba.conf: the superuser "postgres"
	// keeps trust on loopback without SSL (the harness's own URL), every
	// other role may connect only with hostssl and scram-sha-256.
	SSL *Certs
}

// sslHBA is pg_hba.conf of a server with PostgresOptions.SSL.
const sslHBA = `# testenv: SSL and SCRAM for every role but the harness's superuser
local   all all                trust
host    all postgres 127.0.0.1/32 trust
hostssl all all      127.0.0.1/32 scram-sha-256
hostssl all all      ::1/128      scram-sha-256
`

// setupSSL copies the server certificate and key into the server's
// directory (the key readable by the server's account only), writes
// pg_hba.conf and returns the settings that turn SSL and SCRAM on.
func (p *PostgresProc) setupSSL(su serviceUser, c *Certs) ([]string, error) {
	files := map[string]string{"server.crt": c.ServerCert, "server.key": c.ServerKey}
	for name, src := range files {
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("testenv: %w", err)
		}
		dst := filepath.Join(p.root, name)
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			return nil, fmt.Errorf("testenv: %w", err)
		}
		if err := su.own(dst); err != nil {
			return nil, err
		}
	}
	hba := filepath.Join(p.root, "data", "pg_hba.conf")
	if err := os.WriteFile(hba, []byte(sslHBA), 0o600); err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	if err := su.own(hba); err != nil {
		return nil, err
	}
	return []string{"ssl=on", "ssl_cert_file=" + filepath.Join(p.root, "server.crt"),
		"ssl_key_file=" + filepath.Join(p.root, "server.key"), "password_encryption=scram-sha-256"}, nil
}

// NewPostgresWith starts a private PostgreSQL server with opts, destroyed
// at the end of the test.
func NewPostgresWith(t testing.TB, opts PostgresOptions) *PostgresProc {
	t.Helper()
	requireMain(t)
	if opts.FakeClock {
		RequireFakeTime(t)
	}
	p, err := startPostgresProc(opts)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	t.Cleanup(p.destroy)
	return p
}

// URL returns the superuser URL of the server's "postgres" database.
func (p *PostgresProc) URL() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return pgURL(p.port)
}

// PID returns the process id of the running postmaster, or 0.
func (p *PostgresProc) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil || p.proc.exited() {
		return 0
	}
	return p.proc.pid()
}

// Stop shuts the server down ("fast": sessions are terminated, a
// checkpoint is written) and waits for its end.
func (p *PostgresProc) Stop(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.stopLocked(syscall.SIGINT); err != nil {
		t.Error(err)
	}
}

// Kill shuts the server down at once ("immediate": every process exits
// without a checkpoint; the next start runs crash recovery) and waits for
// its end.
func (p *PostgresProc) Kill(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.stopLocked(syscall.SIGQUIT); err != nil {
		t.Error(err)
	}
}

// Restart starts the server again on the same data and port, after a fast
// shutdown if it still runs.
func (p *PostgresProc) Restart(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.stopLocked(syscall.SIGINT); err != nil {
		t.Error(err)
	}
	if err := p.startLocked(p.port); err != nil {
		t.Fatalf("postgres restart: %v", err)
	}
}

// startPostgresProc runs initdb in a new directory and starts the server.
func startPostgresProc(opts PostgresOptions) (*PostgresProc, error) {
	su, err := lookupServiceUser()
	if err != nil {
		return nil, err
	}
	root, err := newServerDir("regent-pg-")
	if err != nil {
		return nil, err
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = DefaultMaxConnections
	}
	p := &PostgresProc{root: root, maxConns: opts.MaxConnections, settings: opts.Settings, fakeClock: opts.FakeClock}
	if err := p.initdb(su); err != nil {
		_ = os.RemoveAll(root)
		return nil, err
	}
	if opts.SSL != nil {
		extra, err := p.setupSSL(su, opts.SSL)
		if err != nil {
			_ = os.RemoveAll(root)
			return nil, err
		}
		p.settings = append(append([]string{}, p.settings...), extra...)
	}
	if p.fakeClock {
		if err := p.writeClockOffset(0); err != nil {
			_ = os.RemoveAll(root)
			return nil, err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err == nil {
			err = p.startLocked(port)
		}
		if err == nil {
			return p, nil
		}
		if attempt == pgStartAttempts || !strings.Contains(err.Error(), "already in use") {
			_ = os.RemoveAll(root)
			return nil, err
		}
	}
}

// initdb creates the cluster: trust authentication on loopback, superuser
// "postgres".
func (p *PostgresProc) initdb(su serviceUser) error {
	sock := filepath.Join(p.root, "sock")
	if err := os.Mkdir(sock, 0o700); err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	if err := su.own(p.root, sock); err != nil {
		return err
	}
	return su.run(filepath.Join(postgresBin(), "initdb"),
		"-D", filepath.Join(p.root, "data"),
		"-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C",
		"--no-sync", "--no-instructions")
}

// startLocked starts the postmaster on port and waits until it answers.
func (p *PostgresProc) startLocked(port int) error {
	su, err := lookupServiceUser()
	if err != nil {
		return err
	}
	args := []string{
		"-D", filepath.Join(p.root, "data"),
		"-p", strconv.Itoa(port),
		"-k", filepath.Join(p.root, "sock"),
		"-h", "127.0.0.1",
		// Throwaway data: surviving a host crash only costs time. Commits
		// still reach the kernel, so Kill loses nothing.
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=" + strconv.Itoa(p.maxConns),
		"-c", "log_min_messages=warning",
	}
	for _, kv := range p.settings {
		args = append(args, "-c", kv)
	}
	cmd := exec.Command(filepath.Join(postgresBin(), "postgres"), args...)
	if p.fakeClock {
		cmd.Env = append(os.Environ(), p.fakeTimeEnv()...)
	}
	su.apply(cmd)
	// SIGQUIT: immediate shutdown if the test binary dies.
	proc, err := startChild("postgres", cmd, filepath.Join(p.root, "postgres.log"), syscall.SIGQUIT)
	if err != nil {
		return err
	}
	u := pgURL(port)
	if err := poll(pgStartTimeout, proc.done, func(ctx context.Context) error {
		return pgPing(ctx, u)
	}); err != nil {
		_ = proc.stop(syscall.SIGQUIT)
		return proc.failure("%v", err)
	}
	p.port, p.proc = port, proc
	return nil
}

// stopLocked shuts the postmaster down with sig (no-op if it does not run).
func (p *PostgresProc) stopLocked(sig syscall.Signal) error {
	if p.proc == nil {
		return nil
	}
	proc := p.proc
	p.proc = nil
	return proc.stop(sig)
}

// destroy shuts the server down at once and removes its directory.
func (p *PostgresProc) destroy() {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.stopLocked(syscall.SIGQUIT)
	_ = os.RemoveAll(p.root)
}

// postgresBin returns the directory of the PostgreSQL binaries.
func postgresBin() string {
	if v := os.Getenv(EnvPostgresBin); v != "" {
		return v
	}
	return DefaultPostgresBin
}

// pgURL is the superuser URL of a local test server on port.
func pgURL(port int) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
}

// pgPing connects to u and runs a trivial query.
func pgPing(ctx context.Context, u string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, "SELECT 1")
	return err
}

// pgExec runs one statement on a fresh connection to u.
func pgExec(u, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// randomHex returns 2n random hex digits.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// RandomHex returns 2n random hex digits (test passwords, names).
func RandomHex(n int) string { return randomHex(n) }
