package testenv

import (
	"context"
	"testing"
	"time"
)

func TestEtcdCluster(t *testing.T) {
	c := NewEtcdCluster(t, 3)
	eps := c.Endpoints()
	if len(eps) != 3 || c.Size() != 3 {
		t.Fatalf("endpoints %v", eps)
	}
	cli := etcdClient(t, eps)
	if _, err := cli.Put(ctxT(t), "k", "v1"); err != nil {
		t.Fatal(err)
	}
	// Every member is a voting member of one cluster.
	ml, err := cli.MemberList(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(ml.Members) != 3 {
		t.Fatalf("member list: %v", ml.Members)
	}

	leader := c.WaitLeader(t, 30*time.Second)
	follower := (leader + 1) % 3
	c.Kill(t, follower)
	if c.Running(follower) {
		t.Fatal("killed member still running")
	}
	if got := c.Leader(ctxT(t)); got != leader {
		t.Errorf("leader %d after killing follower %d, want %d", got, follower, leader)
	}
	if _, err := cli.Put(ctxT(t), "k", "v2"); err != nil {
		t.Fatalf("put with one member down: %v", err)
	}

	c.Restart(t, follower)
	c.Kill(t, leader)
	next := c.WaitLeader(t, 30*time.Second)
	if next == leader {
		t.Fatalf("killed member %d still reported leader", leader)
	}
	if _, err := cli.Put(ctxT(t), "k", "v3"); err != nil {
		t.Fatalf("put after the leader was killed: %v", err)
	}

	c.RestartAll(t)
	for i := 0; i < 3; i++ {
		if !c.Running(i) {
			t.Fatalf("member %d down after RestartAll", i)
		}
	}
	if got := c.Endpoints(); got[0] != eps[0] || got[2] != eps[2] {
		t.Fatalf("endpoints changed: %v then %v", eps, got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v3" {
		t.Fatalf("after RestartAll: %v", resp.Kvs)
	}

	c.StopAll(t)
	c.StartStopped(t)
	if _, err := cli.Put(ctxT(t), "k", "v4"); err != nil {
		t.Fatalf("put after StopAll and StartStopped: %v", err)
	}
}

func TestPostgresRestartWith(t *testing.T) {
	p := NewPostgres(t)
	conn := pgConnect(t, p.URL())
	if _, err := conn.Exec(ctxT(t), "CREATE TABLE t (x int); INSERT INTO t VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []ShutdownMode{ShutdownFast, ShutdownImmediate} {
		t.Run(mode.String(), func(t *testing.T) {
			before := p.PID()
			c := pgConnect(t, p.URL())
			p.RestartWith(t, mode)
			if _, err := c.Exec(ctxT(t), "SELECT 1"); err == nil {
				t.Fatal("a session survived the restart")
			}
			if after := p.PID(); after == 0 || after == before {
				t.Fatalf("postmaster pid %d then %d", before, after)
			}
			var x int
			if err := pgConnect(t, p.URL()).QueryRow(ctxT(t), "SELECT x FROM t").Scan(&x); err != nil || x != 7 {
				t.Fatalf("after restart: x=%d err=%v", x, err)
			}
		})
	}
	p.ShutdownWith(t, ShutdownImmediate)
	if p.PID() != 0 {
		t.Fatal("PID set after ShutdownWith")
	}
	p.Restart(t)
	pgConnect(t, p.URL())
}
