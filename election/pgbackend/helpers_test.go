package pgbackend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/internal/testenv"
)

// testCtx returns a context cancelled at the end of the test, bounded.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func randomName(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// testOpts returns fast options for a node of cluster.
func testOpts(cluster, node string) election.Options {
	host, _ := os.Hostname()
	return election.Options{
		Identity: election.Identity{Cluster: cluster, Node: node, Host: host, PID: os.Getpid()},
		Timing:   election.Timing{LeaseTTL: 1500 * time.Millisecond, RenewInterval: 300 * time.Millisecond, RetryInterval: 200 * time.Millisecond},
	}
}

// openBackend opens a backend closed at the end of the test.
func openBackend(t testing.TB, url string, opts election.Options) *Backend {
	t.Helper()
	return openBackendCfg(t, Config{URL: url}, opts)
}

func openBackendCfg(t testing.TB, cfg Config, opts election.Options) *Backend {
	t.Helper()
	b, err := New(testCtx(t), cfg, opts, testenv.Logger(t, opts.Node))
	if err != nil {
		t.Fatalf("New(%s): %v", opts.Node, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.Close(ctx)
	})
	return b
}

// rawConn opens a plain connection for the test's own SQL.
func rawConn(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(testCtx(t), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

// eventually polls cond until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// campaignAsync runs Campaign in a goroutine the test waits for.
type campaignResultT struct {
	lead election.Leadership
	err  error
	at   time.Time
}

func campaignAsync(t testing.TB, ctx context.Context, b election.Backend, queue string, payload []byte) <-chan campaignResultT {
	t.Helper()
	ch := make(chan campaignResultT, 1)
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		defer close(done)
		l, err := b.Campaign(ctx, queue, payload)
		ch <- campaignResultT{lead: l, err: err, at: time.Now()}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return ch
}

func mustCampaign(t testing.TB, b election.Backend, queue string, payload []byte) election.Leadership {
	t.Helper()
	ctx, cancel := context.WithTimeout(testCtx(t), 20*time.Second)
	defer cancel()
	l, err := b.Campaign(ctx, queue, payload)
	if err != nil {
		t.Fatalf("campaign %s: %v", queue, err)
	}
	return l
}

func waitResult(t testing.TB, ch <-chan campaignResultT, timeout time.Duration) campaignResultT {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(timeout):
		t.Fatalf("campaign did not return within %s", timeout)
		return campaignResultT{}
	}
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// holdActor keeps b's actor busy in a command until the returned function
// is called or the test ends: like a frozen process, the session stays
// open on the server but sends nothing (no renewal, no lock attempt, no
// other command). inspect, if set, runs on the actor first; its result is
// returned, for the test goroutine to check.
func holdActor(t testing.TB, b *Backend, inspect func(a *actor) string) (release func(), seen string) {
	t.Helper()
	started := make(chan string, 1)
	unblock := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(unblock) }) }
	c := &command{done: make(chan error, 1), fn: func(a *actor) error {
		s := ""
		if inspect != nil {
			s = inspect(a)
		}
		started <- s
		<-unblock
		return nil
	}}
	if err := b.act.submit(c); err != nil {
		t.Fatalf("hold actor: %v", err)
	}
	t.Cleanup(release)
	select {
	case seen = <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("actor not held within 10s")
	}
	return release, seen
}

// lockHolder returns the server pid of the session holding the advisory
// lock of (cluster, queue), 0 if none.
func lockHolder(t testing.TB, c *pgx.Conn, cluster, queue string) int32 {
	t.Helper()
	classid, objid := lockIDs(LockKey(cluster, queue))
	var pid int32
	err := c.QueryRow(testCtx(t), `
SELECT pid FROM pg_locks
WHERE locktype = 'advisory' AND granted AND objsubid = 1
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND classid::bigint = $1 AND objid::bigint = $2`, classid, objid).Scan(&pid)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatalf("lock holder: %v", err)
	}
	return pid
}
