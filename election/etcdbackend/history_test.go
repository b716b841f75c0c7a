package etcdbackend

import (
	"errors"
	"testing"
	"time"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/internal/testenv"
)

func TestHistoryKeys(t *testing.T) {
	k := keyspace{cluster: "c"}
	key := k.historyKey("q", 42)
	if key != "/regent/c/history/q/00000000000000000042" {
		t.Fatalf("history key %s", key)
	}
	if term, ok := k.termOfHistory("q", key); !ok || term != 42 {
		t.Fatalf("termOfHistory(%s) = %d, %v", key, term, ok)
	}
	// Keys sort like terms.
	if !(k.historyKey("q", 9) < k.historyKey("q", 10)) {
		t.Fatal("history keys do not sort like terms")
	}
	for _, bad := range []string{
		"/regent/c/history/q/42", "/regent/c/history/q/0000000000000000004x",
		"/regent/c/history/q/00000000000000000000", "/regent/c/history/other/00000000000000000042",
		"/regent/c/queues/q/leader",
	} {
		if _, ok := k.termOfHistory("q", bad); ok {
			t.Errorf("termOfHistory accepted %s", bad)
		}
	}
}

func TestDecodeHistoryHostile(t *testing.T) {
	cases := map[string][]byte{
		"no reason":  []byte(`{"node":"a"}`),
		"bad reason": []byte(`{"node":"a","end_reason":"boom"}`),
		"no node":    []byte(`{"end_reason":"resign"}`),
	}
	for name, raw := range hostile {
		cases[name] = raw
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := decodeHistory("q", "/regent/c/history/q/1", 1, raw)
			if !errors.Is(err, election.ErrCorruptRecord) {
				t.Fatalf("error %v, want ErrCorruptRecord", err)
			}
		})
	}
	e, err := decodeHistory("q", "/k", 7, []byte(`{"node":"a","host":"h","end_reason":"lost"}`))
	if err != nil || e.Term != 7 || e.Queue != "q" || e.Node != "a" || e.Host != "h" || e.EndReason != election.EndLost {
		t.Fatalf("decoded %+v, %v", e, err)
	}
}

// testCampaign returns a campaign of queue q on a backend that only has
// its keyspace and TTL: enough for the history helpers.
func testCampaign() *campaign {
	b := &Backend{keys: keyspace{cluster: "c"}, ttl: 2 * time.Second}
	return &campaign{b: b, queue: "q"}
}

func TestEndOf(t *testing.T) {
	c := testCampaign()
	now := time.Now()
	tv := []byte(mustJSON(termValue{Node: "a", Lease: 1, TTLMillis: 2000}))
	st := snapshot{termRev: 10, termRaw: tv}
	cases := []struct {
		name   string
		seen   *observed
		reason string
	}{
		{"never watched", nil, election.EndExpiry},
		{"another term watched", &observed{term: 9, beat: now.Add(-100 * time.Millisecond), gone: now}, election.EndExpiry},
		{"gone soon after a heartbeat", &observed{term: 10, beat: now.Add(-300 * time.Millisecond), gone: now}, election.EndLost},
		{"gone a TTL after the last heartbeat", &observed{term: 10, beat: now.Add(-2 * time.Second), gone: now}, election.EndExpiry},
		{"no heartbeat seen", &observed{term: 10, gone: now}, election.EndExpiry},
		{"deletion not seen", &observed{term: 10, beat: now.Add(-100 * time.Millisecond)}, election.EndExpiry},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			end := c.endOf(tc.seen, st)
			if end.term != 10 || end.reason != tc.reason {
				t.Fatalf("end %+v, want term 10 reason %s", end, tc.reason)
			}
			if tc.seen != nil && tc.seen.term == 10 && !tc.seen.gone.IsZero() && !end.at.Equal(tc.seen.gone) {
				t.Fatalf("end at %v, want when the key was seen gone %v", end.at, tc.seen.gone)
			}
		})
	}
}

func TestHistoryOpsTrim(t *testing.T) {
	c := testCampaign()
	k := c.b.keys
	tv := []byte(mustJSON(termValue{Node: "a", Host: "h", Lease: 1, TTLMillis: 2000, ElectedAt: time.Now()}))
	keys := func(terms ...int64) []string {
		var out []string
		for _, term := range terms {
			out = append(out, k.historyKey("q", term))
		}
		return out
	}
	seq := func(from, to int64) []int64 {
		var out []int64
		for i := from; i <= to; i++ {
			out = append(out, i)
		}
		return out
	}
	keep := int64(election.HistoryKeep - 1)
	cases := []struct {
		name     string
		st       snapshot
		put      bool   // the previous term's entry is written
		trimTo   string // the range deleted ends here ("" none)
		released bool
	}{
		{name: "first term", st: snapshot{}},
		{name: "few terms", st: snapshot{termRev: 5, termRaw: tv, history: keys(1, 2, 3, 4)}, put: true},
		{name: "full", st: snapshot{termRev: keep + 1, termRaw: tv, history: keys(seq(1, keep)...)},
			put: true, trimTo: k.historyKey("q", 2)},
		{name: "overfull", st: snapshot{termRev: 100, termRaw: tv, history: keys(seq(1, 99)...)},
			put: true, trimTo: k.historyKey("q", 100-keep+1)},
		{name: "recorded by the loser", st: snapshot{termRev: keep + 1, termRaw: tv, history: keys(seq(1, keep+1)...)},
			trimTo: k.historyKey("q", 2)},
		{name: "junk keys ignored", st: snapshot{termRev: 3, termRaw: tv,
			history: append(keys(1, 2), k.history("q")+"zzz", k.history("q")+"1")}, put: true},
		{name: "undecodable term key", st: snapshot{termRev: 3, termRaw: []byte("{"), history: keys(1, 2)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmps, ops := c.historyOps(tc.st)
			var put, trim string
			for _, op := range ops {
				switch {
				case op.IsPut():
					put = string(op.KeyBytes())
				case op.IsDelete():
					if string(op.KeyBytes()) != k.history("q") {
						t.Errorf("delete from %s, want the history prefix", op.KeyBytes())
					}
					trim = string(op.RangeBytes())
				}
			}
			if want := k.historyKey("q", tc.st.termRev); tc.put != (put == want) || tc.put != (len(cmps) == 1) {
				t.Errorf("put %q with %d comparisons, want put %v of %s", put, len(cmps), tc.put, want)
			}
			if trim != tc.trimTo {
				t.Errorf("trim to %q, want %q", trim, tc.trimTo)
			}
		})
	}
	c.noHistory = true
	if cmps, ops := c.historyOps(snapshot{termRev: 5, termRaw: tv}); len(cmps)+len(ops) != 0 {
		t.Fatal("history written after it was refused")
	}
}

func TestPreviousEntryReasons(t *testing.T) {
	c := testCampaign()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tv := []byte(mustJSON(termValue{Node: "a", Host: "h", Lease: 1, TTLMillis: 2000, ElectedAt: at.Add(-time.Hour)}))
	rel := func(term int64, reason string) []byte {
		return []byte(mustJSON(releasedValue{Term: term, Reason: reason, At: at}))
	}
	cases := []struct {
		name   string
		st     snapshot
		end    termEnd
		reason string
	}{
		{"resigned", snapshot{termRev: 5, termRaw: tv, releasedRaw: rel(5, election.EndResign)}, termEnd{}, election.EndResign},
		{"released", snapshot{termRev: 5, termRaw: tv, releasedRaw: rel(5, election.EndReleased)}, termEnd{}, election.EndReleased},
		{"released by an older regent", snapshot{termRev: 5, termRaw: tv, releasedRaw: []byte(`{"term":5}`)}, termEnd{}, election.EndResign},
		{"given up at its deadline", snapshot{termRev: 5, termRaw: tv, releasedRaw: rel(5, election.EndExpiry)}, termEnd{}, election.EndExpiry},
		{"unknown reason", snapshot{termRev: 5, termRaw: tv, releasedRaw: rel(5, "boom")}, termEnd{}, election.EndResign},
		{"judged lost", snapshot{termRev: 5, termRaw: tv, releasedRaw: rel(4, election.EndResign)},
			termEnd{term: 5, at: at, reason: election.EndLost}, election.EndLost},
		{"not judged", snapshot{termRev: 5, termRaw: tv}, termEnd{term: 4, reason: election.EndLost}, election.EndExpiry},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.end = tc.end
			raw, ok := c.previousEntry(tc.st)
			if !ok {
				t.Fatal("no entry")
			}
			e, err := decodeHistory("q", "/k", 5, []byte(raw))
			if err != nil {
				t.Fatal(err)
			}
			if e.EndReason != tc.reason || e.Node != "a" || e.Host != "h" || !e.From.Equal(at.Add(-time.Hour)) || e.To.IsZero() {
				t.Fatalf("entry %+v, want reason %s", e, tc.reason)
			}
		})
	}
}

// TestHistoryInEtcd covers what the contract suite does not: undecodable
// entries are skipped, a clean end shows before the next leader, and an
// unclean one the loser did not record is judged by the next leader.
func TestHistoryInEtcd(t *testing.T) {
	eps := testenv.Etcd(t)
	cluster := uniq("c")
	a := open(t, eps, testOptions(cluster, "a"))
	ro := open(t, eps, election.Options{Identity: election.Identity{Cluster: cluster, Node: "status"}, ReadOnly: true})
	cli := admin(t, eps)
	ctx := ctxT(t, 30*time.Second)

	if h, err := ro.History(ctx, "q", 0); err != nil || len(h) != 0 {
		t.Fatalf("history of a queue never led: %+v, %v", h, err)
	}
	l1 := mustCampaign(t, a, "q", 5*time.Second)
	if err := l1.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	// Resigned, no next leader yet: known from the released key.
	h, err := ro.History(ctx, "q", 0)
	if err != nil || len(h) != 1 || h[0].Term != l1.Term() || h[0].EndReason != election.EndResign ||
		h[0].To.Before(h[0].From) || h[0].Node != "a" || h[0].Host != "testhost" {
		t.Fatalf("history after resign: %+v, %v", h, err)
	}

	// Hostile values under the history prefix are skipped, never a panic.
	// Their terms lie between l1's and the next (each put is a revision).
	i := l1.Term()
	for name, raw := range hostile {
		i++
		if _, err := cli.Put(ctx, ro.keys.historyKey("q", i), string(raw)); err != nil {
			t.Fatalf("put %s: %v", name, err)
		}
	}
	if _, err := cli.Put(ctx, ro.keys.history("q")+"not-a-term", "x"); err != nil {
		t.Fatal(err)
	}
	l2 := mustCampaign(t, a, "q", 5*time.Second)
	h, err = ro.History(ctx, "q", 0)
	if err != nil || len(h) != 2 || h[0].Term != l2.Term() || h[0].EndReason != "" || h[1].Term != l1.Term() {
		t.Fatalf("history with hostile entries: %+v, %v", h, err)
	}

	// The term key damaged: the latest term is skipped, not a panic.
	if _, err := cli.Put(ctx, ro.keys.term("q"), "{"); err != nil {
		t.Fatal(err)
	}
	if h, err := ro.History(ctx, "q", 1); err != nil || len(h) != 1 || h[0].Term != l1.Term() {
		t.Fatalf("history with a damaged term key: %+v, %v", h, err)
	}
	if _, err := ro.History(ctx, "bad/queue", 1); err == nil {
		t.Fatal("history of an invalid queue name: no error")
	}
}

// TestWaitRecordsBeatAndGone: a follower's watch records when it saw a
// heartbeat of the leader's lease and when the leader key went, which is
// what endOf judges an unclean end from when the loser recorded nothing.
func TestWaitRecordsBeatAndGone(t *testing.T) {
	eps := testenv.Etcd(t)
	cluster := uniq("c")
	a := open(t, eps, testOptions(cluster, "a"))
	b := open(t, eps, testOptions(cluster, "b"))
	cli := admin(t, eps)
	ctx := ctxT(t, 30*time.Second)

	la := mustCampaign(t, a, "q", 5*time.Second)
	c := &campaign{b: b, queue: "q", log: b.log}
	st, err := c.read(ctx)
	if err != nil || st.leader == nil || st.leader.CreateRevision != la.Term() {
		t.Fatalf("read: %+v, %v", st, err)
	}
	seen := &observed{term: la.Term(), lease: st.leader.Lease, since: time.Now()}
	done := make(chan error, 1)
	go func() { done <- c.wait(ctx, seen, st.rev) }()
	// Delete the key once a heartbeat came after the watch began.
	hb := a.keys.heartbeat(a.LeaseID())
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := cli.Get(ctx, hb)
		if err == nil && len(resp.Kvs) > 0 && resp.Kvs[0].ModRevision > st.rev {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no heartbeat of the leader's lease")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := cli.Delete(ctx, a.keys.leader("q")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("wait: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("wait did not end when the leader key was deleted")
	}
	if seen.beat.IsZero() || seen.gone.IsZero() || seen.gone.Before(seen.beat) {
		t.Fatalf("beat %v gone %v", seen.beat, seen.gone)
	}
	st, err = c.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if end := c.endOf(seen, st); end.reason != election.EndLost {
		t.Fatalf("end %+v, want lost", end)
	}
	// The loser, alive, recorded it too.
	eventuallyT(t, 5*time.Second, func() bool {
		h, err := b.History(ctx, "q", 1)
		return err == nil && len(h) == 1 && h[0].Term == la.Term() && h[0].EndReason == election.EndLost
	})
}

// eventuallyT polls cond every 20 ms until it holds or d passes.
func eventuallyT(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
