package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regentd/regent/internal/faultproxy"
	"github.com/regentd/regent/internal/testenv"
)

// The fault-injection matrix (issue 5): every fault not already covered by
// supervisor_test.go (SIGKILL, SIGSTOP, blackhole both ways, asymmetric
// cut), on each backend where it applies. Every case runs a leader "a" and
// one or two hot followers, injects the fault, heals it, and asserts: no
// overlap of two terms' workers (observer), a leader again within the
// documented bound for the fault, no orphan worker at the end, `status
// --check` OK again, no replica exited unexpectedly, terms only
// increasing, and every term seen recorded in the backend's history.

const mq = "q" // the queue of the matrix cases

// matrixCase is one case in progress.
type matrixCase struct {
	t    *testing.T
	c    *cluster
	a    *replica
	reps []*replica
	term int64 // a's term when the fault is injected
}

// startCase starts leader a (through aBackend when not nil, e.g. a
// proxy) and then the followers, and waits until a runs workers and every
// follower stands by.
func startCase(t *testing.T, be backend, aBackend []string, followers ...string) *matrixCase {
	t.Helper()
	c := newCluster(t, be)
	a := c.start(replicaOpts{node: "a", backend: aBackend})
	leader, term := c.waitLeaderRunning(mq, hangTimeout)
	if leader != "a" {
		t.Fatalf("leader %s, want a", leader)
	}
	m := &matrixCase{t: t, c: c, a: a, reps: []*replica{a}, term: term}
	for _, f := range followers {
		m.reps = append(m.reps, c.start(replicaOpts{node: f}))
	}
	for _, f := range followers {
		c.waitFollower(mq, f)
	}
	return m
}

// takeover waits for a term newer than the faulted one and checks the
// time from `from` to its first worker line against bound.
func (m *matrixCase) takeover(what string, from time.Time, bound time.Duration) (string, int64) {
	m.t.Helper()
	node, term, first := m.c.awaitNewTerm(mq, m.term, hangTimeout)
	checkBound(m.t, fmt.Sprintf("%s: new leader %s (term %d → %d) running", what, node, m.term, term), first.Sub(from), bound)
	return node, term
}

// oldWorkersGone waits until a's workers are dead and checks how soon
// after `from` they wrote their last line against bound.
func (m *matrixCase) oldWorkersGone(what string, from time.Time, bound time.Duration) {
	m.t.Helper()
	// Of a's faulted term: once the backend is back, a may win a new term
	// before this looks (an etcd cluster restart expires every lease).
	eventually(m.t, testTTL+2*time.Second, "a's workers of the faulted term are gone", func() bool {
		for _, w := range m.c.liveWorkers() {
			if w.node == "a" && w.term == m.term {
				return false
			}
		}
		return true
	})
	if last := m.c.lastLineOf(mq, "a", m.term); !last.IsZero() {
		checkBound(m.t, what+": a's workers' last line", max(0, last.Sub(from)), bound)
	}
}

// steadyTerm holds an observation window of d and fails unless a alone
// ran workers, of its term, throughout.
func (m *matrixCase) steadyTerm(what string, from time.Time, d time.Duration) {
	m.t.Helper()
	for time.Since(from) < d {
		time.Sleep(100 * time.Millisecond) // observation window: nothing must change
	}
	var last time.Time
	for _, l := range m.c.lines() {
		if l.Queue != mq || l.At.Before(from) {
			continue
		}
		if l.Node != "a" || l.Term != m.term {
			m.t.Errorf("%s: node %s ran term %d during the window; want a's term %d unchanged", what, l.Node, l.Term, m.term)
			return
		}
		last = l.At
	}
	if time.Since(last) > time.Second {
		m.t.Errorf("%s: a's workers stopped writing at %s; want them running", what, last.Format("15:04:05.000"))
	}
	m.t.Logf("%s: term %d unchanged over a %s window", what, m.term, d)
}

// finish heals nothing: the caller has. It runs the end-of-case checks.
func (m *matrixCase) finish() {
	m.t.Helper()
	m.c.finishHealed(m.reps, []string{mq}, m.c.lines, workerTick, hangTimeout)
}

// One-way partitions between the leader and the backend: only its
// requests are lost (to-server), or only the answers (to-client). The
// leader must stop its workers by its deadline and a follower take over
// within the cut-off bound.
func TestMatrixOneWayPartition(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode faultproxy.Mode
	}{
		{"to-server", faultproxy.BlackholeToServer},
		{"to-client", faultproxy.BlackholeToClient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, be backend) {
				p, err := faultproxy.Start(be.addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(p.Close)
				m := startCase(t, be, be.viaProxy(p.Addr()), "b")
				cutAt := time.Now()
				p.SetMode(tc.mode)
				m.oldWorkersGone(be.name+" "+tc.name, cutAt, boundCutOff)
				m.takeover(be.name+" "+tc.name, cutAt, boundCutOff)
				p.SetMode(faultproxy.Pass)
				m.c.waitFollower(mq, "a")
				m.finish()
			})
		})
	}
}

// An administrator ends the leader's lock session (pg_terminate_backend).
// The lock is free at once, but the old leader may trust its lease until
// it expires: the new leader must not start before that (the observer
// proves no overlap, and the gap is at least the rest of the lease).
func TestMatrixTerminateBackend(t *testing.T) {
	t.Run("postgres", func(t *testing.T) {
		be := postgresBackend(t)
		m := startCase(t, be, nil, "b")
		ctx, cancel := context.WithTimeout(context.Background(), hangTimeout)
		defer cancel()
		admin, err := pgx.Connect(ctx, be.pgURL)
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close(context.WithoutCancel(ctx))
		app := "regent:" + m.c.name + ":a"
		var pid int
		if err := admin.QueryRow(ctx, `SELECT a.pid FROM pg_stat_activity a
			WHERE a.application_name = $1 AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted)`,
			app).Scan(&pid); err != nil {
			t.Fatalf("find a's lock session (application_name %s): %v", app, err)
		}
		// The lease in force when the session is killed: a renewal after
		// this read only moves its expiry later.
		lockPID, expires := pgLease(t, admin, m.c.name, mq, "a")
		if lockPID != pid {
			t.Fatalf("a's lease names lock session %d, pg_stat_activity %d", lockPID, pid)
		}
		killedAt := time.Now()
		var ok bool
		if err := admin.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&ok); err != nil || !ok {
			t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, ok, err)
		}
		m.oldWorkersGone("postgres terminate", killedAt, boundSessionKilled)
		_, _, first := m.c.awaitNewTerm(mq, m.term, hangTimeout)
		leaseRespected(t, "postgres terminate", killedAt, expires, first)
		m.takeover("postgres terminate", killedAt, boundCutOff)
		m.c.waitLeaderRunning(mq, hangTimeout)
		m.finish()
	})
}

// PostgreSQL restarted under the replicas (a private server), in fast and
// immediate shutdown modes. The old leader's workers stop as soon as its
// session ends; a leader runs again once the server is back, within one
// redial backoff (capped at the TTL) plus the lease.
func TestMatrixPostgresRestart(t *testing.T) {
	p := testenv.NewPostgres(t)
	be := privatePostgresBackend(p)
	for _, mode := range []testenv.ShutdownMode{testenv.ShutdownFast, testenv.ShutdownImmediate} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Run("postgres", func(t *testing.T) {
				m := startCase(t, be, nil, "b")
				what := "postgres " + mode.String() + " restart"
				ctx, cancel := context.WithTimeout(context.Background(), hangTimeout)
				defer cancel()
				admin, err := pgx.Connect(ctx, be.pgURL)
				if err != nil {
					t.Fatal(err)
				}
				_, expires := pgLease(t, admin, m.c.name, mq, "a")
				admin.Close(ctx)
				downAt := time.Now()
				p.RestartWith(t, mode)
				upAt := time.Now()
				t.Logf("%s: server down and back in %s", what, upAt.Sub(downAt).Round(time.Millisecond))
				m.oldWorkersGone(what, downAt, boundSessionKilled)
				_, _, first := m.c.awaitNewTerm(mq, m.term, hangTimeout)
				leaseRespected(t, what, downAt, expires, first)
				m.takeover(what+" (from the server's return)", upAt, 2*testTTL+time.Second)
				m.c.waitLeaderRunning(mq, hangTimeout)
				m.finish()
			})
		})
	}
}

// pgLease reads the lease of queue's leader record, which must be node's:
// the server session holding the lock and the expiry.
func pgLease(t *testing.T, admin *pgx.Conn, cluster, queue, node string) (int, time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangTimeout)
	defer cancel()
	var lockPID int
	var expires time.Time
	// A record follows its session's lease unless it has one of its own
	// (schema version 3, see election/pgbackend/session.go).
	if err := admin.QueryRow(ctx, `
SELECT l.lock_pid, COALESCE(l.expires_at, s.expires_at)
FROM regent_leaders l LEFT JOIN regent_sessions s ON s.cluster = l.cluster AND s.pid = l.lock_pid
WHERE l.cluster = $1 AND l.queue = $2 AND l.node = $3`,
		cluster, queue, node).Scan(&lockPID, &expires); err != nil {
		t.Fatalf("read %s's lease of %s: %v", node, queue, err)
	}
	return lockPID, expires
}

// leaseRespected fails the test if the next term's first worker line came
// before the old lease's expiry: the old leader's session ended early
// (killed, server restarted), but the old leader may trust its lease
// until then.
func leaseRespected(t *testing.T, what string, faultAt, expires, first time.Time) {
	t.Helper()
	t.Logf("%s: old lease ran %s past the fault; new term's first worker line %s after its expiry",
		what, expires.Sub(faultAt).Round(time.Millisecond), first.Sub(expires).Round(time.Millisecond))
	if first.Before(expires.Add(-historySkew)) {
		t.Errorf("%s: new term's workers started at %s, %s before the old lease (in force at the fault) expired at %s",
			what, first.Format("15:04:05.000"), expires.Sub(first), expires.Format("15:04:05.000"))
	}
}

// etcd member faults on a private three-member cluster: a member that is
// not the raft leader killed (no leadership change at all), the raft
// leader killed (a leader again after the etcd election plus the lease),
// and the whole cluster restarted (a leader again within the lease once
// etcd is back).
func TestMatrixEtcdMembers(t *testing.T) {
	ec := testenv.NewEtcdCluster(t, 3)
	be := etcdClusterBackend(ec)
	// etcd elects a new raft leader within a few election timeouts
	// (1 s each by default).
	const etcdElection = 3 * time.Second

	t.Run("kill-follower-member", func(t *testing.T) {
		t.Run("etcd", func(t *testing.T) {
			m := startCase(t, be, nil, "b", "c")
			leader := ec.WaitLeader(t, hangTimeout)
			victim := (leader + 1) % ec.Size()
			at := time.Now()
			ec.Kill(t, victim)
			t.Logf("killed etcd member %d (raft leader: %d)", victim, leader)
			m.steadyTerm("etcd member kill", at, 3*testTTL)
			ec.Restart(t, victim)
			m.finish()
		})
	})

	t.Run("kill-leader-member", func(t *testing.T) {
		t.Run("etcd", func(t *testing.T) {
			m := startCase(t, be, nil, "b", "c")
			leader := ec.WaitLeader(t, hangTimeout)
			at := time.Now()
			ec.Kill(t, leader)
			next := ec.WaitLeader(t, hangTimeout)
			t.Logf("killed etcd raft leader member %d; member %d leads after %s", leader, next, time.Since(at).Round(time.Millisecond))
			// The regent leader may keep its term (renewals resumed in
			// time) or lose it; either way one leader must run workers
			// within the bound.
			m.leaderAgain("etcd raft leader kill", at, etcdElection+testTTL, etcdElection+boundCutOff)
			ec.Restart(t, leader)
			m.finish()
		})
	})

	t.Run("restart-cluster", func(t *testing.T) {
		t.Run("etcd", func(t *testing.T) {
			m := startCase(t, be, nil, "b", "c")
			downAt := time.Now()
			ec.RestartAll(t)
			upAt := time.Now()
			t.Logf("etcd cluster down and back in %s", upAt.Sub(downAt).Round(time.Millisecond))
			m.oldWorkersGone("etcd cluster restart", downAt, boundCutOff)
			m.takeover("etcd cluster restart (from etcd's return)", upAt, etcdElection+boundCutOff)
			m.c.waitLeaderRunning(mq, hangTimeout)
			m.finish()
		})
	})
}

// leaderAgain holds an observation window until `at` plus settle (by
// then a leader that could not renew has given up), waits until one node
// runs workers, and, if the term changed, checks the time from `at` to
// the new term's first worker line against bound.
func (m *matrixCase) leaderAgain(what string, at time.Time, settle, bound time.Duration) {
	m.t.Helper()
	for time.Since(at) < settle {
		time.Sleep(100 * time.Millisecond) // observation window: let a lost leadership show
	}
	node, term := m.c.waitLeaderRunning(mq, hangTimeout)
	if term == m.term {
		m.t.Logf("%s: leader %s kept term %d", what, node, term)
		return
	}
	m.takeover(what, at, bound)
}

// renewalBudget is the longest backend round trip with which the
// leader's renewals still keep its trust window (TTL 2 s, renewal every
// 400 ms, margin 300 ms):
//
//   - etcd: a renewal is a lease keep-alive then a heartbeat put, two
//     round trips, bounded together by the renewal timeout
//     min(max(2·renew, 500 ms), TTL/2) = 800 ms: 400 ms a round trip.
//   - Postgres: one statement a renewal; renewals back to back, each
//     must land before the deadline of the one before:
//     2·RTT < TTL − margin, so 850 ms.
func renewalBudget(backend string) time.Duration {
	if backend == "etcd" {
		return min(max(2*testRenew, 500*time.Millisecond), testTTL/2) / 2
	}
	return (testTTL - testMargin) / 2
}

// The leader's backend round trip raised just under its renewal budget
// (no failover: the term holds over a few TTLs) and just over it (a
// failover, no overlap). The delay is one-way on a pipelined proxy.
func TestMatrixLatency(t *testing.T) {
	for _, tc := range []struct {
		name   string
		factor float64 // of the renewal budget, as a round trip
	}{
		{"under", 0.6},
		{"over", 1.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, be backend) {
				dp, err := faultproxy.Start(be.addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(dp.Close)
				m := startCase(t, be, be.viaProxy(dp.Addr()), "b")
				rtt := time.Duration(float64(renewalBudget(be.name)) * tc.factor)
				what := fmt.Sprintf("%s latency %s (round trip %s, budget %s)", be.name, tc.name, rtt, renewalBudget(be.name))
				at := time.Now()
				dp.SetDelay(rtt / 2)
				if tc.name == "under" {
					m.steadyTerm(what, at, 3*testTTL)
				} else {
					m.oldWorkersGone(what, at, boundCutOff)
					// Unlike a cut, the slow path still delivers: the last
					// renewal a sends before its lease runs out lands a
					// one-way delay later and holds the lease on the
					// backend one more TTL (Postgres; etcd's leader
					// resigns through the same slow path sooner).
					m.takeover(what, at, 2*testTTL+rtt/2+time.Second)
				}
				dp.SetDelay(0)
				m.c.waitLeaderRunning(mq, hangTimeout)
				m.finish()
			})
		})
	}
}
