package testenv

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// PgBouncerPath is the PgBouncer binary PgBouncer runs.
const PgBouncerPath = "/usr/sbin/pgbouncer"

// Pool modes of PgBouncer.
const (
	// PoolSession gives each client one server session for its lifetime.
	PoolSession = "session"
	// PoolTransaction gives a client a server session per transaction.
	PoolTransaction = "transaction"
	// PoolStatement gives a client a server session per statement.
	PoolStatement = "statement"
)

// PgBouncer starts PgBouncer with the given pool_mode in front of the
// Postgres server of backendURL (a test server with trust authentication)
// and returns the same URL through it. Every database of the server is
// reachable; clients are not authenticated. PgBouncer is stopped at the end
// of the test.
func PgBouncer(t testing.TB, backendURL, poolMode string) string {
	t.Helper()
	requireMain(t)
	switch poolMode {
	case PoolSession, PoolTransaction, PoolStatement:
	default:
		t.Fatalf("pgbouncer: unknown pool mode %q", poolMode)
	}
	backend, err := url.Parse(backendURL)
	if err != nil || backend.Hostname() == "" || backend.Port() == "" {
		t.Fatalf("pgbouncer: backend URL %q needs a host and a port (%v)", backendURL, err)
	}
	user := backend.User.Username()
	if user == "" {
		user = "postgres"
	}
	su, err := lookupServiceUser()
	if err != nil {
		t.Fatal(err)
	}
	root, err := newServerDir("regent-pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	if err := su.own(root); err != nil {
		t.Fatal(err)
	}
	authFile := filepath.Join(root, "users.txt")
	if err := os.WriteFile(authFile, fmt.Appendf(nil, "%q \"\"\n", user), 0o644); err != nil {
		t.Fatal(err)
	}

	for attempt := 1; ; attempt++ {
		port := FreePort(t)
		ini := filepath.Join(root, "pgbouncer.ini")
		conf := pgBouncerConfig(backend.Hostname(), backend.Port(), port, poolMode, authFile)
		if err := os.WriteFile(ini, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(PgBouncerPath, ini)
		su.apply(cmd)
		proc, err := startChild("pgbouncer", cmd, filepath.Join(root, "pgbouncer.log"), syscall.SIGTERM)
		if err != nil {
			t.Fatal(err)
		}
		front := *backend
		front.Host = fmt.Sprintf("127.0.0.1:%d", port)
		front.User = url.User(user)
		err = poll(pgStartTimeout, proc.done, func(ctx context.Context) error {
			return pgPing(ctx, front.String())
		})
		if err == nil {
			t.Cleanup(proc.kill)
			return front.String()
		}
		proc.kill()
		err = proc.failure("%v", err)
		if attempt == pgStartAttempts || !strings.Contains(err.Error(), "already in use") {
			t.Fatal(err)
		}
	}
}

// pgBouncerConfig is the ini file of a test PgBouncer.
func pgBouncerConfig(host, port string, listenPort int, poolMode, authFile string) string {
	return fmt.Sprintf(`[databases]
* = host=%s port=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = %s
max_client_conn = 500
default_pool_size = 20
ignore_startup_parameters = extra_float_digits
`, host, port, listenPort, authFile, poolMode)
}
