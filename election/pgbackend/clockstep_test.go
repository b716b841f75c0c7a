package pgbackend

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/internal/faultproxy"
	"github.com/regentd/regent/internal/testenv"
)

// A step of the server's wall clock does not shorten a lease (DESIGN.md,
// safety property 7). The leader stops renewing while it still trusts its
// lease: cut off (a proxy holds back every byte both ways, so its server
// session lingers and keeps the lock: the stale-session path) or its
// session ended by an administrator (the lock is free at once: the
// takeover path). Then the server's clock jumps forward by twice the TTL:
// on the server's clock the lease has long expired and the session is
// stale. The old leader trusts its leadership until its ValidUntil (the
// send time of its last successful renewal plus the TTL), so the follower
// must not lead before that; and it should lead soon after, as without
// the step.
func TestServerClockStepForward(t *testing.T) {
	const ttl = 3 * time.Second
	for _, tc := range []struct {
		name string
		cut  bool // cut off behind the proxy, else session ended
	}{
		{"cut-off", true},
		{"session-ended", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := testenv.NewPostgresWith(t, testenv.PostgresOptions{FakeClock: true})
			dbURL := srv.NewDatabase(t)
			cluster := randomName("c")
			opts := func(node string) (o election.Options) {
				o = testOpts(cluster, node)
				o.LeaseTTL = ttl
				o.RenewInterval = 500 * time.Millisecond
				return o
			}
			b := openBackend(t, dbURL, opts("b")) // migrates

			aURL := dbURL
			var proxy *faultproxy.Proxy
			if tc.cut {
				u, err := url.Parse(dbURL)
				if err != nil {
					t.Fatal(err)
				}
				proxy, err = faultproxy.Start(u.Host)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(proxy.Close)
				u.Host = proxy.Addr()
				aURL = u.String()
			}
			a := openBackend(t, aURL, opts("a"))
			if proxy != nil {
				// Before a's Close: let it hear that its session ended.
				t.Cleanup(func() { proxy.SetMode(faultproxy.Pass) })
			}
			admin := rawConn(t, dbURL)
			ctx := testCtx(t)

			la := mustCampaign(t, a, "q", nil)
			ch := campaignAsync(t, ctx, b, "q", nil)
			// b stands by while a renews a few times.
			for range 3 {
				select {
				case <-la.Renewed():
				case r := <-ch:
					t.Fatalf("b won while a renews: %+v", r)
				case <-time.After(ttl):
					t.Fatal("a did not renew")
				}
			}

			cut := time.Now()
			if tc.cut {
				proxy.SetMode(faultproxy.Blackhole)
			} else {
				var ok bool
				if err := admin.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, a.LockPID()).Scan(&ok); err != nil || !ok {
					t.Fatalf("terminate: %v %v", ok, err)
				}
			}
			srv.StepClock(t, 2*ttl)
			t.Logf("a %s; server clock stepped %s forward", map[bool]string{true: "cut off", false: "session ended"}[tc.cut], 2*ttl)

			r := waitResult(t, ch, 4*ttl)
			if r.err != nil {
				t.Fatal(r.err)
			}
			// a's last renewal is long over: ValidUntil no longer moves.
			valid := la.ValidUntil()
			t.Logf("b led %s after the cut; a's ValidUntil was %s after the cut; b led %s after it (grace %s)",
				r.at.Sub(cut).Round(time.Millisecond), valid.Sub(cut).Round(time.Millisecond),
				r.at.Sub(valid).Round(time.Millisecond), b.s.staleGrace)
			if r.at.Before(valid) {
				t.Fatalf("b led %s before a's ValidUntil (a's last renewal sent + TTL): the clock step shortened the lease",
					valid.Sub(r.at).Round(time.Millisecond))
			}
			// Liveness: as without the step, the lease's end plus the
			// grace, plus slack for a loaded machine.
			const slack = time.Second
			if late := r.at.Sub(valid); late > b.s.staleGrace+slack {
				t.Errorf("b led %s after a's ValidUntil; want within the grace %s + %s", late, b.s.staleGrace, slack)
			}
			if r.lead.Term() != la.Term()+1 {
				t.Fatalf("term %d after %d", r.lead.Term(), la.Term())
			}
		})
	}
}

// A follower that first sees a lease late (a campaign started after the
// leader's last renewal) cannot tell when that renewal was sent: it waits
// the lease's TTL, as its leader recorded it, from its first sight, even
// though the server's clock says the lease expired a minute ago.
func TestLateWatcherWaitsRecordedTTL(t *testing.T) {
	url := testenv.NewDatabase(t)
	cluster := randomName("c")
	b := openBackend(t, url, testOpts(cluster, "b")) // migrates; TTL 1.5s
	stale := rawConn(t, url)
	admin := rawConn(t, url)
	ctx := testCtx(t)
	if _, err := stale.Exec(ctx, `SELECT pg_advisory_lock($1)`, LockKey(cluster, "q")); err != nil {
		t.Fatal(err)
	}
	const recordedTTL = 3 * time.Second
	if _, err := admin.Exec(ctx, `
WITH s AS (
	INSERT INTO regent_sessions (cluster, pid, node, renewed_at, expires_at)
	VALUES ($1, $2, 'ghost', now() - interval '1 minute', now() - interval '1 minute' + $3 * interval '1 microsecond')
)
INSERT INTO regent_leaders (cluster, queue, node, host, pid, term, elected_at, expires_at, lock_pid, released)
VALUES ($1, 'q', 'ghost', 'h', 1, 7, now() - interval '2 minutes', NULL, $2, false)`,
		cluster, stale.PgConn().PID(), recordedTTL.Microseconds()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	l := mustCampaign(t, b, "q", nil)
	took := time.Since(start)
	t.Logf("b led %s after its campaign began (recorded TTL %s, b's own %s, grace %s)",
		took.Round(time.Millisecond), recordedTTL, b.s.LeaseTTL, b.s.staleGrace)
	if l.Term() != 8 {
		t.Fatalf("term %d, want 8", l.Term())
	}
	if took < recordedTTL {
		t.Fatalf("b led %s after it first saw the lease: before the recorded TTL %s", took, recordedTTL)
	}
	if took > recordedTTL+b.s.staleGrace+time.Second {
		t.Errorf("b led %s after it first saw the lease; want within the recorded TTL %s + grace %s + 1s",
			took, recordedTTL, b.s.staleGrace)
	}
	if err := stale.Ping(ctx); err == nil {
		t.Fatal("stale session still alive")
	}
}

// Every write of a leader's session lease (the takeover, each renewal)
// is announced on RenewalChannel with the row's new version, which is
// what a follower reads as the session row's xmin.
func TestRenewalsAnnounced(t *testing.T) {
	url := testenv.NewDatabase(t)
	cluster := randomName("c")
	a := openBackend(t, url, testOpts(cluster, "a"))
	listener := rawConn(t, url)
	admin := rawConn(t, url)
	ctx := testCtx(t)
	if _, err := listener.Exec(ctx, "LISTEN "+RenewalChannel); err != nil {
		t.Fatal(err)
	}
	mustCampaign(t, a, "q", nil)
	rows := map[string]bool{}
	for len(rows) < 3 {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := listener.WaitForNotification(wctx)
		cancel()
		if err != nil {
			t.Fatalf("no renewal notice (%d so far): %v", len(rows), err)
		}
		r, ok := parseRenewal(n.Payload)
		if !ok || r.Cluster != cluster || r.PID != int32(a.LockPID()) {
			t.Fatalf("notice %q; want cluster %s, pid %d", n.Payload, cluster, a.LockPID())
		}
		var xmins []string
		if err := admin.QueryRow(ctx, `SELECT array_agg(xmin::text) FROM regent_sessions WHERE cluster = $1`,
			cluster).Scan(&xmins); err != nil {
			t.Fatal(err)
		}
		if rows[r.Row] {
			t.Fatalf("version %s announced twice", r.Row)
		}
		rows[r.Row] = true
		t.Logf("notice %s; session rows now at %v", n.Payload, xmins)
	}
}
