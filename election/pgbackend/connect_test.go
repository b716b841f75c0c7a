package pgbackend

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/internal/testenv"
)

func TestRefuseTransactionPooler(t *testing.T) {
	url := testenv.NewDatabase(t)
	for _, mode := range []string{testenv.PoolTransaction, testenv.PoolStatement} {
		t.Run(mode, func(t *testing.T) {
			pooled := testenv.PgBouncer(t, url, mode)
			for _, readOnly := range []bool{false, true} {
				opts := testOpts(randomName("c"), "a")
				opts.ReadOnly = readOnly
				b, err := New(testCtx(t), Config{URL: pooled}, opts, testenv.Logger(t, "a"))
				if err == nil {
					_ = b.Close(testCtx(t))
					t.Fatalf("read_only=%v: New accepted a %s-mode pooler", readOnly, mode)
				}
				if !errors.Is(err, election.ErrUnsupportedPooler) {
					t.Fatalf("read_only=%v: %v", readOnly, err)
				}
				for _, want := range []string{"transaction-mode pooler", "backend pid changed between statements", "direct or session-mode connection", "--postgres-url"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not say %q", err, want)
					}
				}
			}
		})
	}
}

func TestAcceptSessionPooler(t *testing.T) {
	url := testenv.NewDatabase(t)
	pooled := testenv.PgBouncer(t, url, testenv.PoolSession)
	cluster := randomName("c")
	a := openBackend(t, pooled, testOpts(cluster, "a"))
	b := openBackend(t, pooled, testOpts(cluster, "b"))
	if a.LockPID() == 0 || a.LockPID() == b.LockPID() {
		t.Fatalf("lock pids %d %d", a.LockPID(), b.LockPID())
	}
	la := mustCampaign(t, a, "q", nil)
	ch := campaignAsync(t, testCtx(t), b, "q", nil)
	if err := la.Resign(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, ch, 5*time.Second); r.err != nil {
		t.Fatal(r.err)
	}
	// The lock pid is the server's pid, not the pooler's.
	admin := rawConn(t, url)
	var app string
	if err := admin.QueryRow(testCtx(t), `SELECT application_name FROM pg_stat_activity WHERE pid = $1`, b.LockPID()).Scan(&app); err != nil {
		t.Fatal(err)
	}
	if app != applicationName(cluster, "b") {
		t.Fatalf("application_name %q", app)
	}
}

func TestUnreachable(t *testing.T) {
	// A closed port: refused at once.
	port := testenv.FreePort(t)
	opts := testOpts("c", "a")
	url := fmt.Sprintf("postgres://regent:s3cret-pw@127.0.0.1:%d/db?sslmode=disable", port)
	start := time.Now()
	_, err := New(testCtx(t), Config{URL: url, DialTimeout: 2 * time.Second}, opts, testenv.Logger(t, "a"))
	if !errors.Is(err, election.ErrUnavailable) {
		t.Fatalf("closed port: %v", err)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("127.0.0.1:%d", port)) || strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatalf("message %q", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("took %s", took)
	}

	// A server that accepts and never answers: New gives up at DialTimeout.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var conns []net.Conn
	var mu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	url = fmt.Sprintf("postgres://regent:s3cret-pw@%s/db?sslmode=disable", l.Addr())
	start = time.Now()
	_, err = New(testCtx(t), Config{URL: url, DialTimeout: 500 * time.Millisecond}, opts, testenv.Logger(t, "a"))
	took := time.Since(start)
	if !errors.Is(err, election.ErrUnavailable) || !strings.Contains(err.Error(), l.Addr().String()) || strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatalf("silent server: %v", err)
	}
	if took < 400*time.Millisecond || took > 1500*time.Millisecond {
		t.Fatalf("silent server: gave up after %s, want ~500ms", took)
	}
}

func TestBadURLRedacted(t *testing.T) {
	_, err := New(testCtx(t), Config{URL: "postgres://u:s3cret-pw@127.0.0.1:notaport/db"}, testOpts("c", "a"), nil)
	if err == nil || strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatalf("error %v", err)
	}
}

// Several replicas starting at once on an empty database migrate it once;
// a second run changes nothing.
func TestMigrateConcurrentIdempotent(t *testing.T) {
	url := testenv.NewDatabase(t)
	ctx := testCtx(t)
	const n = 6
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := New(ctx, Config{URL: url}, testOpts("c", fmt.Sprintf("n%d", i)), testenv.Logger(t, fmt.Sprintf("n%d", i)))
			if err == nil {
				err = b.Close(ctx)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	c := rawConn(t, url)
	var v, rows int
	if err := c.QueryRow(ctx, `SELECT version, (SELECT count(*) FROM regent_schema_version) FROM regent_schema_version`).Scan(&v, &rows); err != nil {
		t.Fatal(err)
	}
	if v != SchemaVersion || rows != 1 {
		t.Fatalf("version %d rows %d", v, rows)
	}
	// Idempotent, also from scratch on an existing schema.
	for range 2 {
		if err := migrate(ctx, c, testenv.Logger(t, "m")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Exec(ctx, `DELETE FROM regent_schema_version`); err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, c, testenv.Logger(t, "m")); err != nil {
		t.Fatal(err)
	}
	if err := c.QueryRow(ctx, `SELECT version FROM regent_schema_version`).Scan(&v); err != nil || v != SchemaVersion {
		t.Fatalf("version %d %v", v, err)
	}
}

// One connection per replica whatever the number of queues, with the
// agreed application_name and the keepalive settings.
func TestOneConnectionPerReplica(t *testing.T) {
	url := testenv.NewDatabase(t)
	cluster := randomName("c")
	a := openBackend(t, url, testOpts(cluster, "a"))
	b := openBackend(t, url, testOpts(cluster, "b"))
	for i := range 5 {
		mustCampaign(t, a, fmt.Sprintf("q%d", i), nil)
		campaignAsync(t, testCtx(t), b, fmt.Sprintf("q%d", i), nil)
	}
	admin := rawConn(t, url)
	ctx := testCtx(t)
	for _, node := range []string{"a", "b"} {
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`,
			applicationName(cluster, node)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("node %s has %d connections", node, n)
		}
	}
	// The session settings are in force on the lock connection, and the
	// client socket has its keepalives and TCP_USER_TIMEOUT.
	var idle, interval, count, userTimeout, stmt string
	lock := a.LockPID()
	var got int
	var sockUserTimeout, sockKeepalive, sockIdle int
	err := a.act.call(ctx, func(ac *actor) error {
		raw, err := ac.conn().PgConn().Conn().(syscall.Conn).SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := raw.Control(func(fd uintptr) {
			sockUserTimeout, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
			if serr == nil {
				sockKeepalive, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
			}
			if serr == nil {
				sockIdle, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
			}
		}); err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
		return ac.conn().QueryRow(ctx, `SELECT current_setting('tcp_keepalives_idle'), current_setting('tcp_keepalives_interval'),
		current_setting('tcp_keepalives_count'), current_setting('tcp_user_timeout'), current_setting('statement_timeout'), pg_backend_pid()`).
			Scan(&idle, &interval, &count, &userTimeout, &stmt, &got)
	})
	if err != nil {
		t.Fatal(err)
	}
	if sockUserTimeout != 1500 || sockKeepalive != 1 || sockIdle != 1 {
		t.Fatalf("client socket: TCP_USER_TIMEOUT=%d SO_KEEPALIVE=%d TCP_KEEPIDLE=%d", sockUserTimeout, sockKeepalive, sockIdle)
	}
	if got != lock || idle != "1" || interval != "1" || count != "4" || userTimeout != "1500" || stmt != "5s" {
		t.Fatalf("settings idle=%s interval=%s count=%s user_timeout=%s statement_timeout=%s pid=%d/%d",
			idle, interval, count, userTimeout, stmt, got, lock)
	}
}

// A server restart ends a read-write session at once (Done closes), while
// a read-only backend reconnects and keeps serving.
func TestServerRestart(t *testing.T) {
	pg := testenv.NewPostgres(t)
	cluster := randomName("c")
	a := openBackend(t, pg.URL(), testOpts(cluster, "a"))
	ro := testOpts(cluster, "")
	ro.ReadOnly = true
	r := openBackend(t, pg.URL(), ro)
	l := mustCampaign(t, a, "q", nil)
	changes := r.Changes(testCtx(t))

	pg.Restart(t)
	select {
	case <-l.Done():
	case <-time.After(time.Second):
		t.Fatal("leadership survived the restart")
	}
	if !closed(a.Done()) {
		t.Fatal("session survived the restart")
	}
	if closed(r.Done()) {
		t.Fatal("read-only backend done after a restart")
	}
	eventually(t, 10*time.Second, "read-only reads after the restart", func() bool {
		_, err := r.Leaders(testCtx(t))
		return err == nil
	})
	// The old lease is still there until it expires; then nobody leads.
	eventually(t, 5*time.Second, "the old lease to expire", func() bool {
		_, err := r.Leader(testCtx(t), "q")
		return errors.Is(err, election.ErrNoLeader)
	})
	select {
	case _, ok := <-changes:
		if !ok {
			t.Fatal("read-only Changes closed by the restart")
		}
	default:
		t.Fatal("no change signal after reconnecting")
	}
	// A new replica leads; the read-only backend sees it.
	b := openBackend(t, pg.URL(), testOpts(cluster, "b"))
	lb := mustCampaign(t, b, "q", nil)
	eventually(t, 5*time.Second, "the new leader through the read-only backend", func() bool {
		rec, err := r.Leader(testCtx(t), "q")
		return err == nil && rec.Node == "b" && rec.Term == lb.Term()
	})
	if lb.Term() != l.Term()+1 {
		t.Fatalf("term %d after %d", lb.Term(), l.Term())
	}
}
