package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// envEcho turns the test binary into a helper that prints its pid and
// exits at EOF on stdin (see TestStartHelper).
const envEcho = "TESTENV_TEST_ECHO"

func TestMain(m *testing.M) {
	if os.Getenv(envEcho) != "" {
		fmt.Fprintln(os.Stderr, "echo helper started")
		fmt.Printf("echo %d\n", os.Getpid())
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	Main(m)
}

func TestStartHelper(t *testing.T) {
	h, line := StartHelper(t, []string{envEcho + "=1"}, "echo ", 30*time.Second)
	if line != strconv.Itoa(h.PID()) {
		t.Fatalf("ready line %q, want the pid %d", line, h.PID())
	}
	h.Kill()
	select {
	case <-h.Done():
	default:
		t.Fatal("Done not closed after Kill")
	}
}

func etcdClient(t *testing.T, eps []string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestEtcdShared(t *testing.T) {
	eps := Etcd(t)
	if again := Etcd(t); again[0] != eps[0] {
		t.Fatalf("second call started another server: %v then %v", eps, again)
	}
	c := etcdClient(t, eps)
	if _, err := c.Put(ctxT(t), "/testenv/shared", "x"); err != nil {
		t.Fatal(err)
	}
}

func TestEtcdProcKillRestart(t *testing.T) {
	p := NewEtcd(t)
	eps := p.Endpoints()
	c := etcdClient(t, eps)
	if _, err := c.Put(ctxT(t), "k", "v"); err != nil {
		t.Fatal(err)
	}

	p.Kill(t)
	if p.PID() != 0 {
		t.Fatal("PID still set after Kill")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	_, err := c.Get(ctx, "k")
	cancel()
	if err == nil {
		t.Fatal("get succeeded on a killed member")
	}

	p.Restart(t)
	if got := p.Endpoints(); got[0] != eps[0] {
		t.Fatalf("endpoints changed across restart: %v then %v", eps, got)
	}
	resp, err := c.Get(ctxT(t), "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("after restart: %v", resp.Kvs)
	}

	p.Stop(t)
	p.Restart(t)
	if _, err := c.Get(ctxT(t), "k"); err != nil {
		t.Fatal(err)
	}
}

func pgConnect(t *testing.T, u string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctxT(t), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestNewDatabase(t *testing.T) {
	var name string
	t.Run("create", func(t *testing.T) {
		u := NewDatabase(t)
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		name = pu.Path[1:]
		conn := pgConnect(t, u)
		if _, err := conn.Exec(ctxT(t), "CREATE TABLE t (x int)"); err != nil {
			t.Fatal(err)
		}
	})
	var n int
	if err := pgConnect(t, Postgres(t)).QueryRow(ctxT(t),
		"SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("database %s still exists after its test", name)
	}
}

func TestPostgresProcKillRestart(t *testing.T) {
	p := NewPostgres(t)
	conn := pgConnect(t, p.URL())
	if _, err := conn.Exec(ctxT(t), "CREATE TABLE t (x int); INSERT INTO t VALUES (7)"); err != nil {
		t.Fatal(err)
	}

	p.Kill(t)
	if _, err := conn.Exec(ctxT(t), "SELECT 1"); err == nil {
		t.Fatal("query succeeded on a killed server")
	}
	p.Restart(t)
	var x int
	if err := pgConnect(t, p.URL()).QueryRow(ctxT(t), "SELECT x FROM t").Scan(&x); err != nil || x != 7 {
		t.Fatalf("after restart: x=%d err=%v", x, err)
	}

	p.Stop(t)
	if p.PID() != 0 {
		t.Fatal("PID still set after Stop")
	}
	p.Restart(t)
	pgConnect(t, p.URL())
}

// backendPID runs pg_backend_pid() in simple protocol (a transaction pooler
// loses prepared statements).
func backendPID(t *testing.T, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) int {
	t.Helper()
	var pid int
	if err := q.QueryRow(ctxT(t), "SELECT pg_backend_pid()", pgx.QueryExecModeSimpleProtocol).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestPgBouncer(t *testing.T) {
	db := NewDatabase(t)
	for _, tc := range []struct {
		mode     string
		samePIDs bool
	}{
		{PoolSession, true},
		{PoolTransaction, false},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			u := PgBouncer(t, db, tc.mode)
			c1 := pgConnect(t, u)
			before := backendPID(t, c1)
			// Another client holds a server connection in a transaction:
			// under transaction pooling it takes c1's idle one.
			tx, err := pgConnect(t, u).Begin(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(context.Background())
			backendPID(t, tx)
			after := backendPID(t, c1)
			if (before == after) != tc.samePIDs {
				t.Fatalf("pool mode %s: backend pid %d then %d", tc.mode, before, after)
			}
		})
	}
}

func TestFreePort(t *testing.T) {
	if p := FreePort(t); p <= 0 || p > 65535 {
		t.Fatalf("port %d", p)
	}
}

func TestEnvOverrides(t *testing.T) {
	t.Setenv(EnvEtcdEndpoints, "http://127.0.0.1:1,http://127.0.0.1:2")
	if eps := Etcd(t); len(eps) != 2 || eps[1] != "http://127.0.0.1:2" {
		t.Fatalf("Etcd with %s: %v", EnvEtcdEndpoints, eps)
	}
	t.Setenv(EnvPostgresURL, "postgres://x@127.0.0.1:1/y")
	if u := Postgres(t); u != os.Getenv(EnvPostgresURL) {
		t.Fatalf("Postgres with %s: %v", EnvPostgresURL, u)
	}
}

func TestSweepServerDirs(t *testing.T) {
	const prefix = "regent-testenv-sweep-"
	mine, err := newServerDir(prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(mine)
	// A directory whose owner has exited, like a SIGKILLed test binary's.
	orphan, err := newServerDir(prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(orphan)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(dead.Process.Pid)
	if err := os.WriteFile(filepath.Join(orphan, ownerFile), []byte(pid), 0o644); err != nil {
		t.Fatal(err)
	}

	sweepServerDirs(prefix)
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphan dir still there: %v", err)
	}
	if _, err := os.Stat(mine); err != nil {
		t.Errorf("live dir removed: %v", err)
	}
}
