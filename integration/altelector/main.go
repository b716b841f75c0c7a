// Command altelector is the simplest alternative to regent that the scale
// benchmark compares against: one backend session and one lock per queue,
// as a user gets by running one client-go-style elector per queue.
//
// etcd: per queue, its own concurrency.Session (a lease kept alive by the
// client) and a concurrency.Election campaign under /alt/<cluster>/<queue>.
// The leader of a queue is the key with the lowest create revision.
//
// PostgreSQL: per queue, its own connection (application_name
// alt:<cluster>:<node>); every renew interval it runs
// pg_try_advisory_lock(key) until it holds the lock, then SELECT 1 as a
// heartbeat. The leader of a queue is the holder of its advisory lock.
//
// It spawns no workers. It runs until SIGTERM/SIGINT, or until killed.
package main

import (
	"context"
	"flag"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

func main() {
	backend := flag.String("backend", "etcd", "etcd or postgres")
	endpoints := flag.String("etcd-endpoints", "", "etcd endpoints, comma-separated")
	pgURL := flag.String("postgres-url", "", "PostgreSQL URL")
	cluster := flag.String("cluster", "alt", "namespace")
	node := flag.String("node", "", "this replica's name")
	queues := flag.Int("queues", 1, "number of queues (named queueName(i))")
	ttl := flag.Duration("ttl", 10*time.Second, "etcd session TTL")
	renew := flag.Duration("renew", 2*time.Second, "postgres heartbeat / retry interval")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var err error
	switch *backend {
	case "etcd":
		err = runEtcd(ctx, strings.Split(*endpoints, ","), *cluster, *node, *queues, *ttl)
	case "postgres":
		err = runPostgres(ctx, *pgURL, *cluster, *node, *queues, *renew)
	default:
		err = fmt.Errorf("unknown backend %q", *backend)
	}
	if err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "altelector:", err)
		os.Exit(1)
	}
}

// queueName is the name of queue i (the benchmark uses the same names).
func queueName(i int) string { return fmt.Sprintf("s%05d", i) }

// etcdPrefix is the election prefix of a queue.
func etcdPrefix(cluster, queue string) string { return "/alt/" + cluster + "/" + queue }

func runEtcd(ctx context.Context, eps []string, cluster, node string, queues int, ttl time.Duration) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	var wg sync.WaitGroup
	errs := make(chan error, queues)
	for i := 0; i < queues; i++ {
		wg.Add(1)
		go func(q string) {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := campaignEtcd(ctx, cli, cluster, node, q, ttl); err != nil && ctx.Err() == nil {
					errs <- err
					select {
					case <-ctx.Done():
					case <-time.After(time.Second):
					}
				}
			}
		}(queueName(i))
	}
	go func() {
		for err := range errs {
			fmt.Fprintln(os.Stderr, "altelector:", err)
		}
	}()
	wg.Wait()
	close(errs)
	return nil
}

// campaignEtcd holds one session for one queue: campaign, then lead until
// the session ends or ctx is done.
func campaignEtcd(ctx context.Context, cli *clientv3.Client, cluster, node, q string, ttl time.Duration) error {
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(int(ttl/time.Second)), concurrency.WithContext(ctx))
	if err != nil {
		return err
	}
	defer s.Close()
	e := concurrency.NewElection(s, etcdPrefix(cluster, q))
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.Done(): // etcd #19597: a campaign must not outlive its session
			cancel()
		case <-cctx.Done():
		}
	}()
	if err := e.Campaign(cctx, node); err != nil {
		return err
	}
	select {
	case <-s.Done():
	case <-ctx.Done():
	}
	return nil
}

// lockKey is the advisory lock key of a queue.
func lockKey(cluster, queue string) int64 {
	h := fnv.New64a()
	h.Write([]byte("alt\x00" + cluster + "\x00" + queue))
	return int64(h.Sum64())
}

func runPostgres(ctx context.Context, u, cluster, node string, queues int, renew time.Duration) error {
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		return err
	}
	cfg.RuntimeParams["application_name"] = "alt:" + cluster + ":" + node
	var wg sync.WaitGroup
	for i := 0; i < queues; i++ {
		wg.Add(1)
		go func(q string) {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := holdPostgres(ctx, cfg, lockKey(cluster, q), renew); err != nil && ctx.Err() == nil {
					fmt.Fprintln(os.Stderr, "altelector:", q, err)
					select {
					case <-ctx.Done():
					case <-time.After(renew):
					}
				}
			}
		}(queueName(i))
	}
	wg.Wait()
	return nil
}

// holdPostgres is one queue's connection: try the lock every renew
// interval until held, then heartbeat every renew interval.
func holdPostgres(ctx context.Context, cfg *pgx.ConnConfig, key int64, renew time.Duration) error {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	held := false
	t := time.NewTimer(rand.N(renew)) // spread the connections over the interval
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		qctx, cancel := context.WithTimeout(ctx, renew)
		if held {
			_, err = conn.Exec(qctx, "SELECT 1")
		} else {
			err = conn.QueryRow(qctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&held)
		}
		cancel()
		if err != nil {
			return err
		}
		t.Reset(renew)
	}
}
