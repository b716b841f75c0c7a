package electiontest

import (
	"errors"
	"time"

	"github.com/regentd/regent/election"
)

// testResignHandover measures resign → next leader with a campaigner
// waiting, ten times, alternating between two replicas.
func testResignHandover(e *env) {
	t := e.t
	bs := []election.Backend{e.replica("a"), e.replica("b")}
	l := e.campaign(bs[0], "q", payload("a"))
	var ds []time.Duration
	for i := range 10 {
		next := e.campaignAsync(bs[(i+1)%2], "q", payload(i))
		next.blocked(t, "the other replica leads")
		resigned := time.Now()
		e.resign(l)
		l = next.won(t, prompt)
		ds = append(ds, next.at.Sub(resigned))
	}
	t.Logf("resign → next leader: %s", summary(ds))
}

// testRenewal checks that a held leadership is renewed: Renewed fires and
// ValidUntil moves forward, staying within one TTL from now.
func testRenewal(e *env) {
	t := e.t
	b := e.replica("a")
	l := e.campaign(b, "q", payload("a"))
	first := l.ValidUntil()
	if now := time.Now(); !first.After(now) || first.After(now.Add(LeaseTTL)) {
		t.Fatalf("ValidUntil %v is not within (now, now+TTL] at %v", first, now)
	}
	for range 3 {
		select {
		case <-l.Renewed():
		case <-l.Done():
			t.Fatal("leadership lost with a healthy session")
		case <-time.After(LeaseTTL):
			t.Fatalf("no renewal within the TTL %v (renew interval %v)", LeaseTTL, RenewInterval)
		}
	}
	last := l.ValidUntil()
	if !last.After(first) {
		t.Fatalf("ValidUntil did not move after three renewals: %v then %v", first, last)
	}
	if now := time.Now(); !last.After(now) || last.After(now.Add(LeaseTTL)) {
		t.Fatalf("ValidUntil %v is not within (now, now+TTL] at %v", last, now)
	}
}

// testKillSession kills the leader's session from outside: the leader must
// see Done, and the waiting campaigner must win only after the old leader
// stopped trusting its leadership (its Done and its ValidUntil), with a
// greater term.
func testKillSession(e *env) {
	t := e.t
	a, b := e.replica("a"), e.replica("b")
	la := e.campaign(a, "q", payload("a"))
	next := e.campaignAsync(b, "q", payload("b"))
	next.blocked(t, "a leads")

	killed := time.Now()
	e.h.KillSession(t, a)
	lostAt := closedWithin(t, la.Done(), LeaseTTL+time.Second, "the leadership's Done after its session was killed")
	closedWithin(t, a.Done(), LeaseTTL+time.Second, "the backend's Done after its session was killed")
	validUntil := la.ValidUntil()

	lb := next.won(t, takeover)
	t.Logf("kill → old leader's Done %v; → new leader %v (old ValidUntil was kill+%v)",
		lostAt.Sub(killed), next.at.Sub(killed), validUntil.Sub(killed))
	if lb.Term() <= la.Term() {
		t.Errorf("new term %d not greater than killed leader's term %d", lb.Term(), la.Term())
	}
	if next.at.Before(lostAt) {
		t.Errorf("new leader won %v before the old leader saw its loss", lostAt.Sub(next.at))
	}
	if next.at.Before(validUntil) {
		t.Errorf("new leader won %v before the old leader's ValidUntil", validUntil.Sub(next.at))
	}

	// The dead session refuses further work.
	if _, err := a.Campaign(e.ctx(), "other", payload("a")); !errors.Is(err, election.ErrSessionLost) {
		t.Errorf("campaign on a killed session: %v, want ErrSessionLost", err)
	}
	if err := la.Publish(e.ctx(), payload("late")); !errors.Is(err, election.ErrNotLeader) {
		t.Errorf("publish on a lost leadership: %v, want ErrNotLeader", err)
	}
	_ = la.Resign(e.ctx()) // idempotent and harmless; its error is not specified
	reader := e.reader()
	if rec := e.leader(reader, "q"); rec.Node != "b" || rec.Term != lb.Term() {
		t.Errorf("record after takeover: %s@%d, want b@%d", rec.Node, rec.Term, lb.Term())
	}
	checkHistory(e, reader, "q",
		wantTerm{lb.Term(), "b", ""},
		wantTerm{la.Term(), "a", election.EndLost},
	)
}

// testHolderKilled runs a leader in another process, kills it with SIGKILL
// and checks that a campaigner of this process takes over with a greater
// term, no sooner than a lease could expire and within the TTL plus a
// margin.
func testHolderKilled(e *env) {
	t := e.t
	reader := e.reader()
	h := e.startHolder("holder", "q")
	rec := e.leader(reader, "q")
	if rec.Node != "holder" || rec.PID != h.PID() || rec.Term != h.term {
		t.Fatalf("record %s pid %d term %d, want holder pid %d term %d", rec.Node, rec.PID, rec.Term, h.PID(), h.term)
	}
	b := e.replica("b")
	next := e.campaignAsync(b, "q", payload("b"))
	next.blocked(t, "the holder process leads")

	killed := time.Now()
	h.Kill()
	lb := next.won(t, takeover)
	took := next.at.Sub(killed)
	t.Logf("SIGKILL of the holder → new leader: %v (lease TTL %v)", took, LeaseTTL)
	if lb.Term() <= h.term {
		t.Errorf("new term %d not greater than the killed holder's term %d", lb.Term(), h.term)
	}
	// The holder renewed at most a renewal period before it died, so its
	// lease outlives it by about a TTL minus a renewal period.
	if took < LeaseTTL/2 {
		t.Errorf("took over %v after the holder died: its lease cannot have expired", took)
	}
	checkHistory(e, reader, "q",
		wantTerm{lb.Term(), "b", ""},
		wantTerm{h.term, "holder", election.EndExpiry},
	)
}

// testReleaseTerm checks that ReleaseTerm with a wrong term does nothing,
// and that with the right term (a dead holder's, as its worker guard would
// send) a waiting campaigner wins at once instead of after the lease.
func testReleaseTerm(e *env) {
	t := e.t
	reader := e.reader()

	// A live leader: wrong terms change nothing.
	a, b := e.replica("a"), e.replica("b")
	la := e.campaign(a, "q", payload("a"))
	next := e.campaignAsync(b, "q", payload("b"))
	for _, wrong := range []int64{la.Term() - 1, la.Term() + 1} {
		_ = reader.ReleaseTerm(e.ctx(), "q", wrong) // an error is allowed, a change is not
	}
	next.blocked(t, "a leads and only wrong terms were released")
	if isClosed(la.Done()) {
		t.Fatal("leadership lost after ReleaseTerm with a wrong term")
	}
	if rec := e.leader(reader, "q"); rec.Node != "a" || rec.Term != la.Term() {
		t.Fatalf("record after wrong-term releases: %s@%d, want a@%d", rec.Node, rec.Term, la.Term())
	}
	e.resign(la)
	next.won(t, prompt)

	// A dead holder: its term released, the follower need not wait it out.
	h := e.startHolder("holder", "q2")
	follower := e.campaignAsync(e.replica("c"), "q2", payload("c"))
	follower.blocked(t, "the holder process leads")
	h.Kill()
	released := time.Now()
	if err := reader.ReleaseTerm(e.ctx(), "q2", h.term); err != nil {
		t.Fatalf("release term %d: %v", h.term, err)
	}
	lc := follower.won(t, prompt)
	t.Logf("ReleaseTerm → new leader: %v", follower.at.Sub(released))
	if lc.Term() <= h.term {
		t.Errorf("new term %d not greater than the released term %d", lc.Term(), h.term)
	}
}
