package etcdbackend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/internal/faultproxy"
	"github.com/regentd/regent/internal/testenv"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Test timings: the same short ones as the contract suite.
const (
	testTTL   = 2 * time.Second
	testRenew = 300 * time.Millisecond
	testRetry = 200 * time.Millisecond
)

// uniq returns prefix followed by random hex, for cluster and node names.
func uniq(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// testOptions returns options for node in cluster with the test timings.
func testOptions(cluster, node string) election.Options {
	return election.Options{
		Identity: election.Identity{Cluster: cluster, Node: node, Host: "testhost", PID: 4242},
		Timing:   election.Timing{LeaseTTL: testTTL, RenewInterval: testRenew, RetryInterval: testRetry},
	}
}

// newProxy starts a fault proxy in front of the first of endpoints,
// closed at the end of the test, and returns it with its endpoints.
func newProxy(t *testing.T, endpoints []string) (*faultproxy.Proxy, []string) {
	t.Helper()
	u, err := url.Parse(endpoints[0])
	if err != nil {
		t.Fatalf("proxy: endpoint %q: %v", endpoints[0], err)
	}
	p, err := faultproxy.Start(u.Host)
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	t.Cleanup(p.Close)
	return p, []string{"http://" + p.Addr()}
}

// open opens a backend on endpoints, closed at the end of the test.
func open(t *testing.T, endpoints []string, opts election.Options) *Backend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := New(ctx, Config{Endpoints: endpoints, DialTimeout: 2 * time.Second}, opts, testenv.Logger(t, opts.Node))
	if err != nil {
		t.Fatalf("open %s: %v", opts.Node, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.Close(ctx)
	})
	return b
}

// admin returns a plain etcd client, closed at the end of the test.
func admin(t *testing.T, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("admin client: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// ctxT returns a context ending with the test (or after d).
func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// campaignResult is the outcome of a Campaign run in the background.
type campaignResult struct {
	l   election.Leadership
	err error
	at  time.Time
}

// campaignAsync runs Campaign in a goroutine; the result arrives on the
// returned channel. The goroutine ends when Campaign returns (at the
// latest when ctx ends or the backend closes).
func campaignAsync(ctx context.Context, b *Backend, queue string) <-chan campaignResult {
	ch := make(chan campaignResult, 1)
	go func() {
		l, err := b.Campaign(ctx, queue, []byte(`{"from":"`+b.opts.Node+`"}`))
		ch <- campaignResult{l: l, err: err, at: time.Now()}
	}()
	return ch
}

// mustCampaign campaigns and fails the test unless it wins within d.
func mustCampaign(t *testing.T, b *Backend, queue string, d time.Duration) election.Leadership {
	t.Helper()
	l, err := b.Campaign(ctxT(t, d), queue, []byte(`{"from":"`+b.opts.Node+`"}`))
	if err != nil {
		t.Fatalf("%s: campaign %s: %v", b.opts.Node, queue, err)
	}
	return l
}

// result waits up to d for a campaign result.
func result(t *testing.T, ch <-chan campaignResult, d time.Duration) campaignResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(d):
		t.Fatalf("campaign did not return within %s", d)
		return campaignResult{}
	}
}

// closedWithin waits up to d for ch to close and returns when it did.
func closedWithin(t *testing.T, ch <-chan struct{}, d time.Duration, what string) time.Time {
	t.Helper()
	if !isOpen(ch) {
		return time.Now()
	}
	select {
	case <-ch:
		return time.Now()
	case <-time.After(d):
		t.Fatalf("%s: not closed within %s", what, d)
		return time.Time{}
	}
}

// isOpen reports whether ch is still open.
func isOpen(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return false
	default:
		return true
	}
}

// pollUntil polls cond every 20 ms until it holds or d passes.
func pollUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mustIs fails unless errors.Is(err, target).
func mustIs(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want one wrapping %v", err, target)
	}
}
