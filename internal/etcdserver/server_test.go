package etcdserver

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testLogger routes the member's warnings to t.Log.
func testLogger(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "etcd", Output: tWriter{t}, Level: hclog.Warn})
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func start(t *testing.T, dir string, clientURL string) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Start(ctx, Config{
		Dir:           dir,
		ClientURL:     clientURL,
		PeerURL:       "http://127.0.0.1:0",
		UnsafeNoFsync: true,
		Logger:        testLogger(t),
	})
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	return s
}

// dataDir returns a private data dir (etcd warns about wider permissions).
func dataDir(t *testing.T) string {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestStartPutRestart(t *testing.T) {
	dir := dataDir(t)
	began := time.Now()
	s := start(t, dir, "http://127.0.0.1:0")
	t.Logf("ready in %v at %v", time.Since(began), s.Endpoints())
	eps := s.Endpoints()
	if len(eps) != 1 || eps[0] == "http://127.0.0.1:0" {
		t.Fatalf("endpoints %v: want one bound address", eps)
	}

	put(t, eps, "k", "v")
	s.Stop()
	s.Stop() // idempotent
	if _, ok := <-s.Err(); ok {
		t.Fatal("Err channel still open after Stop")
	}
	select {
	case <-s.Stopped():
	default:
		t.Fatal("Stopped not closed after Stop")
	}

	// The same data dir and client port again: the data is still there.
	s2 := start(t, dir, eps[0])
	defer s2.Stop()
	if got := get(t, s2.Endpoints(), "k"); got != "v" {
		t.Fatalf("after restart got %q, want %q", got, "v")
	}
}

func put(t *testing.T, eps []string, k, v string) {
	t.Helper()
	c := client(t, eps)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, k, v); err != nil {
		t.Fatalf("put: %v", err)
	}
}

func get(t *testing.T, eps []string, k string) string {
	t.Helper()
	c := client(t, eps)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, k)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

func client(t *testing.T, eps []string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return c
}

func TestStartCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s, err := Start(ctx, Config{
		Dir:       dataDir(t),
		ClientURL: "http://127.0.0.1:0",
		PeerURL:   "http://127.0.0.1:0",
		Logger:    testLogger(t),
	})
	if err == nil {
		s.Stop()
		// A member may be ready before the cancellation is seen; that is fine.
		return
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no dir", Config{ClientURL: "http://127.0.0.1:0", PeerURL: "http://127.0.0.1:0"}},
		{"no client url", Config{Dir: "x", PeerURL: "http://127.0.0.1:0"}},
		{"no peer url", Config{Dir: "x", ClientURL: "http://127.0.0.1:0"}},
		{"no port", Config{Dir: "x", ClientURL: "http://127.0.0.1", PeerURL: "http://127.0.0.1:0"}},
		{"bad scheme", Config{Dir: "x", ClientURL: "ftp://127.0.0.1:1", PeerURL: "http://127.0.0.1:0"}},
		{"bad state", Config{Dir: "x", ClientURL: "http://127.0.0.1:0", PeerURL: "http://127.0.0.1:0", ClusterState: "old"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Start(context.Background(), tc.cfg)
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("got %v, want ErrConfig", err)
			}
		})
	}
}
