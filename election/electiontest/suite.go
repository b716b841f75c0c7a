package electiontest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regentd/regent/election"
)

// Timings every case runs with. etcd counts lease TTLs in whole seconds,
// 2 s at least.
const (
	// LeaseTTL is election.Options.LeaseTTL of every replica.
	LeaseTTL = 2 * time.Second
	// RenewInterval is election.Options.RenewInterval of every replica.
	RenewInterval = 300 * time.Millisecond
	// RetryInterval is election.Options.RetryInterval of every replica.
	RetryInterval = 200 * time.Millisecond
)

const (
	// prompt bounds a handover that needs no lease to expire (resign,
	// ReleaseTerm, Close), and any call that must return "at once":
	// well before the TTL.
	prompt = LeaseTTL / 2
	// takeover bounds a handover after an unclean loss, from the loss.
	takeover = LeaseTTL + 3*time.Second
	// opTimeout bounds one backend call that should not block.
	opTimeout = 10 * time.Second
	// quiet is the window in which something must not happen (a
	// campaigner winning while another leads).
	quiet = 2 * RetryInterval
)

// Run runs the contract suite against h, one subtest per case.
func Run(t *testing.T, h Harness) {
	RunCases(t, h)
}

// Representative lists the cases that stand for the contract where the
// whole suite would cost too much (a backend behind TLS and auth):
// campaign and exclusion, handover, loss of the session, records.
var Representative = []string{"Exclusion", "ResignHandover", "KillSession", "Records", "LostLeadership", "DeploymentID", "Controls"}

// RunCases runs the named cases of the suite (every case when names is
// empty), one subtest each. An unknown name fails the test.
func RunCases(t *testing.T, h Harness, names ...string) {
	if _, ok := os.LookupEnv(envHolder); ok {
		// Running the suite here would start holders recursively.
		t.Fatal("this is a holder process: the package's TestMain must call electiontest.HolderMain first")
	}
	cases := []struct {
		name string
		run  func(e *env)
	}{
		{"Exclusion", testExclusion},
		{"TermsIncrease", testTermsIncrease},
		{"ResignHandover", testResignHandover},
		{"Renewal", testRenewal},
		{"KillSession", testKillSession},
		{"HolderKilled", testHolderKilled},
		{"ManyQueues", testManyQueues},
		{"Records", testRecords},
		{"MembersEnd", testMembersEnd},
		{"PublishAndChanges", testPublishAndChanges},
		{"CorruptRecord", testCorruptRecord},
		{"StepDownRequest", testStepDownRequest},
		{"ReleaseTerm", testReleaseTerm},
		{"History", testHistory},
		{"HistoryTrimmed", testHistoryTrimmed},
		{"CampaignContext", testCampaignContext},
		{"CampaignBusy", testCampaignBusy},
		{"ReadOnly", testReadOnly},
		{"LostLeadership", testLostLeadership},
		{"SessionLost", testSessionLost},
		{"ResignCancelled", testResignCancelled},
		{"Close", testClose},
		{"DeploymentID", testDeploymentID},
		{"Controls", testControls},
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	for _, c := range cases {
		if len(names) > 0 && !want[c.name] {
			continue
		}
		delete(want, c.name)
		t.Run(c.name, func(t *testing.T) {
			c.run(newEnv(t, h, c.name))
		})
	}
	for n := range want {
		t.Errorf("electiontest: no case %q", n)
	}
}

// env is the state of one case: its own cluster on the harness's backend.
type env struct {
	t       *testing.T
	h       Harness
	cluster string
}

func newEnv(t *testing.T, h Harness, name string) *env {
	short := strings.ToLower(name)
	if len(short) > 12 {
		short = short[:12]
	}
	e := &env{t: t, h: h, cluster: short + "-" + randomHex(4)}
	t.Logf("%s backend, cluster %s", h.Name(), e.cluster)
	return e
}

// options returns the options of replica node of the case's cluster.
func (e *env) options(node string) election.Options {
	return election.Options{
		Identity: election.Identity{
			Cluster: e.cluster,
			Node:    node,
			Host:    "host-" + node,
			PID:     os.Getpid(),
		},
		Timing: election.Timing{LeaseTTL: LeaseTTL, RenewInterval: RenewInterval, RetryInterval: RetryInterval},
	}
}

// replica opens a campaigning backend for node.
func (e *env) replica(node string) election.Backend {
	e.t.Helper()
	return e.h.New(e.t, e.options(node))
}

// reader opens a read-only backend that never campaigns.
func (e *env) reader() election.Backend {
	e.t.Helper()
	opts := e.options("reader")
	opts.ReadOnly = true
	return e.h.New(e.t, opts)
}

// ctx returns a context bounded by opTimeout, cancelled at the end of the
// test.
func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	e.t.Cleanup(cancel)
	return ctx
}

// campaign wins queue on b, which must not be contended.
func (e *env) campaign(b election.Backend, queue string, payload []byte) election.Leadership {
	e.t.Helper()
	l, err := b.Campaign(e.ctx(), queue, payload)
	if err != nil {
		e.t.Fatalf("campaign for %s: %v", queue, err)
	}
	if l.Queue() != queue {
		e.t.Fatalf("leadership of queue %q, want %q", l.Queue(), queue)
	}
	return l
}

// resign resigns l, which must succeed.
func (e *env) resign(l election.Leadership) {
	e.t.Helper()
	if err := l.Resign(e.ctx()); err != nil {
		e.t.Fatalf("resign %s: %v", l.Queue(), err)
	}
}

// leader reads the leader record of queue, which must exist.
func (e *env) leader(b election.Backend, queue string) election.LeaderRecord {
	e.t.Helper()
	rec, err := b.Leader(e.ctx(), queue)
	if err != nil {
		e.t.Fatalf("leader of %s: %v", queue, err)
	}
	return rec
}

// pending is a Campaign running in its own goroutine.
type pending struct {
	queue string
	done  chan struct{} // closed when Campaign has returned
	l     election.Leadership
	err   error
	at    time.Time // when Campaign returned
	stop  context.CancelFunc
}

// campaignAsync starts b.Campaign(queue) in a goroutine owned by the test:
// it is cancelled and awaited at the end of the test.
func (e *env) campaignAsync(b election.Backend, queue string, payload []byte) *pending {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pending{queue: queue, done: make(chan struct{}), stop: cancel}
	go func() {
		defer close(p.done)
		p.l, p.err = b.Campaign(ctx, queue, payload)
		p.at = time.Now()
	}()
	e.t.Cleanup(func() {
		cancel()
		select {
		case <-p.done:
		case <-time.After(opTimeout):
			e.t.Errorf("campaign for %s ignored its cancelled context for %v", queue, opTimeout)
		}
	})
	return p
}

// won waits up to d for the campaign to win and returns the leadership.
func (p *pending) won(t *testing.T, d time.Duration) election.Leadership {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("campaign for %s did not win within %v", p.queue, d)
	}
	if p.err != nil {
		t.Fatalf("campaign for %s: %v", p.queue, p.err)
	}
	return p.l
}

// blocked asserts that the campaign does not return within quiet.
func (p *pending) blocked(t *testing.T, why string) {
	t.Helper()
	select {
	case <-p.done:
		t.Fatalf("campaign for %s returned (err %v) while %s", p.queue, p.err, why)
	case <-time.After(quiet):
	}
}

// closedWithin waits up to d for ch to be closed and returns when it was
// seen closed.
func closedWithin(t *testing.T, ch <-chan struct{}, d time.Duration, what string) time.Time {
	t.Helper()
	select {
	case <-ch:
		return time.Now()
	case <-time.After(d):
		t.Fatalf("%s not closed within %v", what, d)
		return time.Time{}
	}
}

// isClosed reports whether ch is closed (or has a value ready).
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// drain empties a wake-up channel.
func drain(ch <-chan struct{}) {
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		default:
			return
		}
	}
}

// woken waits up to d for a wake-up on ch, which must stay open.
func woken(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatalf("Changes channel closed, waiting for a wake-up on %s", what)
		}
	case <-time.After(d):
		t.Fatalf("no wake-up on Changes within %v after %s", d, what)
	}
}

// eventually polls cond every 20 ms until it returns nil or d passes.
func eventually(t *testing.T, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true within %v: %v", d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// payload encodes v as a JSON payload.
func payload(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// sameJSON reports whether a and b encode the same JSON value (a backend
// may store payloads as jsonb, which reformats them).
func sameJSON(a, b []byte) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// median returns the median of ds (which it sorts).
func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// summary formats min/median/max of ds.
func summary(ds []time.Duration) string {
	s := slices.Clone(ds)
	m := median(s)
	return fmt.Sprintf("min %v, median %v, max %v (n=%d)", s[0].Round(time.Microsecond),
		m.Round(time.Microsecond), s[len(s)-1].Round(time.Microsecond), len(s))
}

// randomHex returns 2n random hex digits.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
