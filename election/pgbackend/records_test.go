package pgbackend

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/internal/testenv"
)

func TestCorruptLeaderRecords(t *testing.T) {
	url := testenv.NewDatabase(t)
	cluster := randomName("c")
	a := openBackend(t, url, testOpts(cluster, "a"))
	for _, q := range []string{"good", "node", "term", "payload", "nulls"} {
		mustCampaign(t, a, q, []byte(`{"k":"v"}`))
	}
	admin := rawConn(t, url)
	ctx := testCtx(t)
	for _, sql := range []string{
		`UPDATE regent_leaders SET node = '' WHERE cluster = $1 AND queue = 'node'`,
		`UPDATE regent_leaders SET term = 0 WHERE cluster = $1 AND queue = 'term'`,
		`UPDATE regent_leaders SET payload = '"not an object"' WHERE cluster = $1 AND queue = 'payload'`,
		`UPDATE regent_leaders SET node = NULL, term = NULL, elected_at = NULL, host = NULL, pid = NULL WHERE cluster = $1 AND queue = 'nulls'`,
	} {
		if _, err := admin.Exec(ctx, sql, cluster); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := a.Leaders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5 {
		t.Fatalf("%d records", len(recs))
	}
	for _, rec := range recs {
		wantBad := rec.Queue != "good"
		if wantBad != errors.Is(rec.Err, election.ErrCorruptRecord) {
			t.Errorf("queue %s: err %v", rec.Queue, rec.Err)
		}
		if wantBad && !strings.Contains(rec.Err.Error(), rec.Queue) {
			t.Errorf("error %q does not name queue %s", rec.Err, rec.Queue)
		}
		_, err := a.Leader(ctx, rec.Queue)
		if wantBad != errors.Is(err, election.ErrCorruptRecord) {
			t.Errorf("Leader(%s): %v", rec.Queue, err)
		}
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	url := testenv.NewDatabase(t)
	cluster := randomName("c")
	a := openBackend(t, url, testOpts(cluster, "a"))
	admin := rawConn(t, url)
	ctx := testCtx(t)
	for i, p := range [][]byte{
		[]byte(`{"b": 1,   "a": [1.50, 1e2], "c": {"z": null}}`),
		[]byte(`not json at all`),
		[]byte(`[1,2]`),
		[]byte(`{"nul": "\u0000"}`),
		{},
		nil,
	} {
		q := "q" + string(rune('0'+i))
		l := mustCampaign(t, a, q, p)
		rec, err := a.Leader(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if string(rec.Payload) != string(p) || (p == nil) != (rec.Payload == nil) {
			t.Fatalf("payload %q came back as %q", p, rec.Payload)
		}
		if err := l.Publish(ctx, []byte(`{"v":2}`)); err != nil {
			t.Fatal(err)
		}
		if rec, err = a.Leader(ctx, q); err != nil || string(rec.Payload) != `{"v":2}` {
			t.Fatalf("after publish: %q %v", rec.Payload, err)
		}
	}
	// The jsonb column is queryable, and edited alone it wins.
	var v int
	if err := admin.QueryRow(ctx, `SELECT (payload->>'v')::int FROM regent_leaders WHERE cluster = $1 AND queue = 'q0'`, cluster).Scan(&v); err != nil || v != 2 {
		t.Fatalf("jsonb %d %v", v, err)
	}
	if _, err := admin.Exec(ctx, `UPDATE regent_leaders SET payload = '{"v": 3}' WHERE cluster = $1 AND queue = 'q0'`, cluster); err != nil {
		t.Fatal(err)
	}
	if rec, err := a.Leader(ctx, "q0"); err != nil || string(rec.Payload) != `{"v": 3}` {
		t.Fatalf("after edit: %q %v", rec.Payload, err)
	}
}

func TestMembers(t *testing.T) {
	url := testenv.NewDatabase(t)
	cluster := randomName("c")
	a := openBackend(t, url, testOpts(cluster, "a"))
	b := openBackend(t, url, testOpts(cluster, "b"))
	ctx := testCtx(t)
	if err := a.SetMember(ctx, election.RoleLeader, []byte(`{"cfg":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := b.SetMember(ctx, election.RoleFollower, nil); err != nil {
		t.Fatal(err)
	}
	ms, err := a.Members(ctx)
	if err != nil || len(ms) != 2 {
		t.Fatalf("%v %v", ms, err)
	}
	if ms[0].Node != "a" || ms[0].Role != election.RoleLeader || string(ms[0].Payload) != `{"cfg":1}` || ms[0].Err != nil ||
		ms[1].Node != "b" || ms[1].Role != election.RoleFollower || ms[0].PID == 0 || ms[0].LastSeen.IsZero() {
		t.Fatalf("members %+v", ms)
	}
	// Renewals move last_seen.
	first := ms[0].LastSeen
	eventually(t, 3*time.Second, "last_seen to move", func() bool {
		ms, err := a.Members(ctx)
		return err == nil && len(ms) == 2 && ms[0].LastSeen.After(first)
	})
	// A killed session's member disappears at once; a closed one too.
	admin := rawConn(t, url)
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend($1)`, b.LockPID()); err != nil {
		t.Fatal(err)
	}
	<-b.Done()
	eventually(t, time.Second, "the killed member to disappear", func() bool {
		ms, err := a.Members(ctx)
		return err == nil && len(ms) == 1 && ms[0].Node == "a"
	})
	// A corrupt member is reported, not dropped.
	if _, err := admin.Exec(ctx, `UPDATE regent_members SET payload = '[1]' WHERE cluster = $1 AND node = 'a'`, cluster); err != nil {
		t.Fatal(err)
	}
	ms, err = a.Members(ctx)
	if err != nil || len(ms) != 1 || !errors.Is(ms[0].Err, election.ErrCorruptRecord) {
		t.Fatalf("%+v %v", ms, err)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM regent_members WHERE cluster = $1 AND node = 'a'`, cluster).Scan(&n); err != nil || n != 0 {
		t.Fatalf("member row left after Close: %d %v", n, err)
	}
}

func TestChanges(t *testing.T) {
	url := testenv.NewDatabase(t)
	cluster := randomName("c")
	a := openBackend(t, url, testOpts(cluster, "a"))
	ro := testOpts(cluster, "")
	ro.ReadOnly = true
	r := openBackend(t, url, ro)
	other := openBackend(t, url, testOpts(randomName("other"), "x"))

	ctx, cancel := context.WithCancel(testCtx(t))
	chA := a.Changes(ctx)
	chR := r.Changes(ctx)
	drain := func() {
		for _, ch := range []<-chan struct{}{chA, chR} {
			select {
			case <-ch:
			default:
			}
		}
	}
	expect := func(what string) {
		t.Helper()
		for _, ch := range []<-chan struct{}{chA, chR} {
			select {
			case _, ok := <-ch:
				if !ok {
					t.Fatalf("%s: channel closed", what)
				}
			case <-time.After(time.Second):
				t.Fatalf("%s: no change signal", what)
			}
		}
	}
	l := mustCampaign(t, a, "q", nil)
	expect("elected")
	if err := a.SetMember(testCtx(t), election.RoleLeader, nil); err != nil {
		t.Fatal(err)
	}
	expect("member")
	if err := l.Publish(testCtx(t), []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	expect("publish")
	if err := r.RequestStepDown(testCtx(t), "q", ""); err != nil {
		t.Fatal(err)
	}
	expect("step-down")
	if err := l.Resign(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	expect("resign")
	drain()
	// Another cluster's changes are not ours.
	mustCampaign(t, other, "q", nil)
	select {
	case <-chA:
		t.Fatal("signal for another cluster")
	case <-time.After(200 * time.Millisecond):
	}
	cancel()
	for _, ch := range []<-chan struct{}{chA, chR} {
		eventually(t, time.Second, "channel closed on cancel", func() bool {
			select {
			case _, ok := <-ch:
				return !ok
			default:
				return false
			}
		})
	}
	ch := a.Changes(testCtx(t))
	if err := a.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-ch; ok {
		t.Fatal("Changes open after Close")
	}
	if _, ok := <-a.Changes(testCtx(t)); ok {
		t.Fatal("Changes after Close not closed")
	}
}

func TestReadOnly(t *testing.T) {
	url := testenv.NewDatabase(t)
	cluster := randomName("c")
	a := openBackend(t, url, testOpts(cluster, "a"))
	ro := testOpts(cluster, "")
	ro.ReadOnly = true
	r := openBackend(t, url, ro)
	ctx := testCtx(t)
	if r.LockPID() != 0 {
		t.Fatalf("lock pid %d", r.LockPID())
	}
	if _, err := r.Campaign(ctx, "q", nil); err == nil {
		t.Fatal("read-only campaign")
	}
	if err := r.SetMember(ctx, "x", nil); err == nil {
		t.Fatal("read-only member")
	}
	if _, err := r.Leader(ctx, "q"); !errors.Is(err, election.ErrNoLeader) {
		t.Fatal(err)
	}
	if err := r.RequestStepDown(ctx, "q", ""); !errors.Is(err, election.ErrNoLeader) {
		t.Fatal(err)
	}
	l := mustCampaign(t, a, "q", []byte(`{"n":1}`))
	rec, err := r.Leader(ctx, "q")
	if err != nil || rec.Node != "a" || rec.Term != l.Term() || rec.Cluster != cluster {
		t.Fatalf("%+v %v", rec, err)
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if !closed(r.Done()) {
		t.Fatal("Done open after Close")
	}
	if _, err := r.Leaders(ctx); !errors.Is(err, election.ErrClosed) {
		t.Fatal(err)
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// A step-down naming a successor: the others hold back, the successor
// wins; the request is pending only against the term it named.
func TestStepDownTo(t *testing.T) {
	url := testenv.NewDatabase(t)
	cluster := randomName("c")
	a := openBackend(t, url, testOpts(cluster, "a"))
	b := openBackend(t, url, testOpts(cluster, "b"))
	c := openBackend(t, url, testOpts(cluster, "c"))
	ctx := testCtx(t)
	la := mustCampaign(t, a, "q", nil)
	chB := campaignAsync(t, ctx, b, "q", nil)
	chC := campaignAsync(t, ctx, c, "q", nil)
	if _, ok, err := a.StepDownRequest(ctx, "q"); ok || err != nil {
		t.Fatalf("pending request before any: %v %v", ok, err)
	}
	if err := b.RequestStepDown(ctx, "q", "c"); err != nil {
		t.Fatal(err)
	}
	req, ok, err := a.StepDownRequest(ctx, "q")
	if err != nil || !ok || req.To != "c" || req.Term != la.Term() || req.Queue != "q" || req.RequestedAt.IsZero() {
		t.Fatalf("%+v %v %v", req, ok, err)
	}
	if err := la.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	r := waitResult(t, chC, 5*time.Second)
	if r.err != nil {
		t.Fatal(r.err)
	}
	select {
	case r := <-chB:
		t.Fatalf("b won: %+v", r)
	default:
	}
	if _, ok, err := a.StepDownRequest(ctx, "q"); ok || err != nil {
		t.Fatalf("request still pending after the handover: %v %v", ok, err)
	}
	// c resigns: the hold is over (the term moved), b wins at once.
	if err := r.lead.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if rb := waitResult(t, chB, 2*time.Second); rb.err != nil {
		t.Fatal(rb.err)
	}
}

// A Campaign cancelled while its replica waits out the old lease frees
// the lock it took.
func TestCampaignCancelledWhileWaitingOut(t *testing.T) {
	url := testenv.NewDatabase(t)
	cluster := randomName("c")
	b := openBackend(t, url, testOpts(cluster, "b"))
	admin := rawConn(t, url)
	ctx := testCtx(t)
	if _, err := admin.Exec(ctx, `
INSERT INTO regent_leaders (cluster, queue, node, term, elected_at, expires_at, lock_pid, released)
VALUES ($1, 'q', 'ghost', 7, now(), now() + interval '1 hour', 0, false)`, cluster); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := b.Campaign(cctx, "q", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("campaign: %v", err)
	}
	var held bool
	eventually(t, time.Second, "the lock to be freed", func() bool {
		err := admin.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, LockKey(cluster, "q")).Scan(&held)
		return err == nil && held
	})
}
