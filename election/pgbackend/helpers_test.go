package pgbackend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
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
		Identity:      election.Identity{Cluster: cluster, Node: node, Host: host, PID: os.Getpid()},
		LeaseTTL:      1500 * time.Millisecond,
		RenewInterval: 300 * time.Millisecond,
		RetryInterval: 200 * time.Millisecond,
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
