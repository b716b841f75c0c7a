package supervisor

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/control"
	"github.com/regentd/regent/election"
	"github.com/regentd/regent/supervisor/diagnosis"
)

// drainCluster is one observation of a cluster for the balancer's drain
// decisions: the leader of each queue, the live members (each lists every
// queue), the drained nodes.
type drainCluster struct {
	now     time.Time
	qs      []config.QueueConfig
	leader  map[string]string // queue -> node
	members []string
	drained []string
}

func (c drainCluster) input(me string) balanceInput {
	in := balanceInput{now: c.now, leaders: map[string]election.LeaderRecord{}, decoded: map[string]diagnosis.MemberPayload{},
		leading: map[string]bool{}, drained: map[string]bool{}}
	for i, q := range c.qs {
		if n := c.leader[q.Name]; n != "" {
			in.leaders[q.Name] = election.LeaderRecord{Queue: q.Name, Node: n, Term: int64(i + 1)}
			if n == me {
				in.leading[q.Name] = true
			}
		}
	}
	for _, m := range c.members {
		p := diagnosis.MemberPayload{Queues: map[string]diagnosis.MemberQueue{}}
		for _, q := range c.qs {
			role := election.RoleFollower
			if c.leader[q.Name] == m {
				role = election.RoleLeader
			}
			p.Queues[q.Name] = diagnosis.MemberQueue{Role: role}
		}
		in.decoded[m] = p
		in.members = append(in.members, election.MemberRecord{Node: m, LastSeen: c.now})
	}
	for _, n := range c.drained {
		in.drained[n] = true
	}
	return in
}

func newTestBalancer(me string, qs []config.QueueConfig, balance bool) *balancer {
	return newBalancer(&Config{Identity: election.Identity{Node: me}, Queues: qs, Balance: balance,
		Timing: election.Timing{LeaseTTL: time.Second, RetryInterval: 50 * time.Millisecond}.WithDefaults()})
}

// actions sorts a decision's actions by kind: the yields (queue -> to),
// and the queues of each other kind.
type actions struct {
	yields  map[string]string
	drain   map[string]bool
	undrain map[string]bool
}

func sortActions(d balanceDecision) actions {
	a := actions{yields: map[string]string{}, drain: map[string]bool{}, undrain: map[string]bool{}}
	for _, x := range d.actions {
		switch x.kind {
		case yieldQueue:
			a.yields[x.queue] = x.yield.to
		case drainQueue:
			a.drain[x.queue] = true
		case undrainQueue:
			a.undrain[x.queue] = true
		}
	}
	return a
}

// A drained replica that leads 30 of 90 queues beside two live replicas
// leading 30 each hands all 30 over in one batch, 15 to each (the
// balanced targets), and holds back from every queue; the others plan
// no move to it. Once they arrived, nothing moves any more: 45 and 45.
func TestDrainHandsEverythingOver(t *testing.T) {
	qs, names := numberedQueues(90)
	c := drainCluster{now: time.Unix(1000, 0), qs: qs, leader: map[string]string{},
		members: []string{"self", "a", "b"}, drained: []string{"self"}}
	for i, n := range names {
		c.leader[n] = []string{"self", "a", "b"}[i/30]
	}
	for _, balance := range []bool{true, false} {
		t.Run(fmt.Sprintf("balance=%v", balance), func(t *testing.T) {
			bl := newTestBalancer("self", qs, balance)
			d := bl.decide(c.input("self"))
			got := sortActions(d)
			to := map[string]int{}
			for q, n := range got.yields {
				if c.leader[q] != "self" {
					t.Fatalf("yields %s, led by %s", q, c.leader[q])
				}
				to[n]++
			}
			if to["a"] != 15 || to["b"] != 15 || len(to) != 2 {
				t.Fatalf("handed over %v, want 15 to a and 15 to b", to)
			}
			if len(got.drain) != 90 || len(got.undrain) != 0 {
				t.Fatalf("drain holds on %d queues, %d undrained; want all 90 held", len(got.drain), len(got.undrain))
			}
			if !d.draining || d.batch != 30 {
				t.Fatalf("draining %v batch %d, want a drain batch of 30", d.draining, d.batch)
			}
			// The batch is pending: no second one before it arrived.
			if again := sortActions(bl.decide(c.input("self"))); len(again.yields) != 0 {
				t.Fatalf("a second batch while the first is under way: %v", again.yields)
			}
		})
	}
	// The live replicas plan nothing toward the drained one.
	for _, me := range []string{"a", "b"} {
		if y := sortActions(newTestBalancer(me, qs, true).decide(c.input(me))).yields; len(y) != 0 {
			t.Fatalf("%s hands over %v while self drains", me, y)
		}
	}
	// Arrived: 45 and 45, self leads nothing and nobody moves.
	i := 0
	for _, n := range names {
		if c.leader[n] == "self" {
			c.leader[n] = []string{"a", "b"}[i%2]
			i++
		}
	}
	for _, me := range []string{"self", "a", "b"} {
		if y := sortActions(newTestBalancer(me, qs, true).decide(c.input(me))).yields; len(y) != 0 {
			t.Fatalf("%s hands over %v after the drain", me, y)
		}
	}
}

// A drained replica stands by for a queue no other live, non-drained
// replica lists, keeps leading it, and hands it over as soon as one
// does; a drained other replica does not count as one.
func TestDrainStandsByAlone(t *testing.T) {
	qs, _ := numberedQueues(2)
	now := time.Unix(1000, 0)
	bl := newTestBalancer("self", qs, true)
	in := func(aLists ...string) balanceInput {
		in := drainCluster{now: now, qs: qs, leader: map[string]string{"q00": "self", "q01": "self"},
			members: []string{"self", "d"}, drained: []string{"self", "d"}}.input("self")
		p := diagnosis.MemberPayload{Queues: map[string]diagnosis.MemberQueue{}}
		for _, q := range aLists {
			p.Queues[q] = diagnosis.MemberQueue{Role: election.RoleFollower}
		}
		in.decoded["a"] = p
		in.members = append(in.members, election.MemberRecord{Node: "a", LastSeen: now})
		return in
	}
	// a lists nothing: self keeps both and campaigns for them.
	got := sortActions(bl.decide(in()))
	if len(got.yields) != 0 || len(got.drain) != 0 || len(got.undrain) != 2 {
		t.Fatalf("alone (d is drained too): %+v; want no handover, no hold", got)
	}
	// a lists q00 only.
	got = sortActions(bl.decide(in("q00")))
	if len(got.yields) != 1 || got.yields["q00"] != "a" || !got.drain["q00"] || !got.undrain["q01"] {
		t.Fatalf("a lists q00: %+v; want q00 handed to a and held back, q01 kept", got)
	}
	// a's record goes stale: self stands by for both again.
	now = now.Add(time.Minute)
	stale := in("q00", "q01")
	stale.members[len(stale.members)-1].LastSeen = now.Add(-time.Minute)
	got = sortActions(bl.decide(stale))
	if len(got.drain) != 0 || len(got.undrain) != 2 {
		t.Fatalf("a stale: %+v; want no hold", got)
	}
}

// A queue that prefers the drained node goes to its next live preferred
// node, else to the least loaded; a drained node is no balancing or
// prefer target of the others.
func TestDrainPrefer(t *testing.T) {
	qs, names := numberedQueues(4)
	qs[0].Prefer = []string{"self", "b"}
	qs[1].Prefer = []string{"self"}
	c := drainCluster{now: time.Unix(1000, 0), qs: qs, leader: map[string]string{},
		members: []string{"self", "a", "b"}, drained: []string{"self"}}
	for _, n := range names {
		c.leader[n] = "self"
	}
	got := sortActions(newTestBalancer("self", qs, true).decide(c.input("self")))
	if got.yields["q00"] != "b" || len(got.yields) != 4 {
		t.Fatalf("yields %v; want all 4, q00 to b (its next preferred node)", got.yields)
	}
	to := map[string]int{}
	for _, n := range got.yields {
		to[n]++
	}
	if to["a"] != 2 || to["b"] != 2 {
		t.Fatalf("yields %v: want 2 and 2", got.yields)
	}

	// a leads all 4; self is drained: a hands q00 to b (prefer skips
	// self), and balances the rest with b only (the plan counts a's
	// pinned queue as a's: q00 plus 2).
	for _, n := range names {
		c.leader[n] = "a"
	}
	got = sortActions(newTestBalancer("a", qs, true).decide(c.input("a")))
	for q, n := range got.yields {
		if n != "b" {
			t.Fatalf("a hands %s to %s; want only b as a target (self drained)", q, n)
		}
	}
	if got.yields["q00"] != "b" || len(got.yields) != 3 {
		t.Fatalf("a hands over %v; want q00 (preferred b) and two more to b", got.yields)
	}
}

// An undrained replica ends its drain holds and balances again.
func TestUndrainEndsHolds(t *testing.T) {
	qs, names := numberedQueues(6)
	c := drainCluster{now: time.Unix(1000, 0), qs: qs, leader: map[string]string{},
		members: []string{"self", "a"}}
	for _, n := range names {
		c.leader[n] = "a"
	}
	for _, balance := range []bool{true, false} {
		got := sortActions(newTestBalancer("self", qs, balance).decide(c.input("self")))
		if len(got.undrain) != 6 || len(got.drain) != 0 {
			t.Fatalf("balance=%v: %+v; want every drain hold ended", balance, got)
		}
	}
	// And a, above its share, hands 3 to self again.
	got := sortActions(newTestBalancer("a", qs, true).decide(c.input("a")))
	if len(got.yields) != 3 {
		t.Fatalf("a hands over %v, want 3 to self", got.yields)
	}
}

// The drain hold interrupts a campaign under way, is waited out like
// the others, and ends at once on clearDrain.
func TestDrainHoldByTheClock(t *testing.T) {
	clk := newFakeClock(time.Unix(1000, 0))
	h := newHolds()
	h.holdDrain(clk.Now(), clk.Now().Add(10*time.Second))
	select {
	case <-h.wake:
	default:
		t.Fatal("holdDrain did not wake the runner")
	}
	if h.left(clk.Now(), false) != 10*time.Second {
		t.Fatalf("interrupting hold left %s, want 10s", h.left(clk.Now(), false))
	}
	// A refresh moves it on without a wake-up; an expired one wakes.
	h.holdDrain(clk.Now(), clk.Now().Add(12*time.Second))
	select {
	case <-h.wake:
		t.Fatal("a refresh woke the runner")
	default:
	}
	clk.Advance(20 * time.Second)
	h.holdDrain(clk.Now(), clk.Now().Add(10*time.Second))
	select {
	case <-h.wake:
	default:
		t.Fatal("a new hold after an expired one did not wake the runner")
	}
	h.clearDrain()
	if l := h.left(clk.Now(), true); l > 0 {
		t.Fatalf("held %s after clearDrain", l)
	}
}

// On the fake backend: a replica whose node is drained hands its queue
// to the replica standing by, resigns after its workers stopped, and its
// member record says drained, with its features and HTTP address.
func TestDrainedReplicaHandsOver(t *testing.T) {
	fb := newFakeBackend()
	runOnFake(t, fb, Config{Queues: []config.QueueConfig{queueCfg("q", 0)}, HTTPAddr: "127.0.0.1:1234"})
	fb.mu.Lock()
	fb.leaders["q"] = election.LeaderRecord{Queue: "q", Node: "self", Term: 1}
	fb.mu.Unlock()
	select {
	case fb.grant <- newFakeLeadership("q", 1, time.Now().Add(time.Hour)):
	case <-time.After(5 * time.Second):
		t.Fatal("no campaign")
	}
	self := func() diagnosis.MemberPayload {
		fb.mu.Lock()
		m := fb.members["self"]
		fb.mu.Unlock()
		p, _ := diagnosis.DecodeMemberPayload(m.Payload)
		return p
	}
	waitFor(t, "the leadership", func() bool { return self().Queues["q"].Role == election.RoleLeader })
	if p := self(); p.Drained || p.HTTPAddr != "127.0.0.1:1234" || len(p.Features) != len(control.Features) {
		t.Fatalf("member record %+v: want http_addr and features, not drained", p)
	}

	// Another replica stands by, and self's node is drained.
	mp, _ := json.Marshal(diagnosis.MemberPayload{Queues: map[string]diagnosis.MemberQueue{"q": {Role: election.RoleFollower}}})
	fb.mu.Lock()
	fb.members["other"] = election.MemberRecord{Node: "other", LastSeen: time.Now(), Payload: mp}
	fb.controls = []election.Control{{Kind: control.KindDrain, Name: "self",
		Value: control.Encode(control.Drain{Since: time.Now(), By: "op@host"})}}
	fb.mu.Unlock()
	fb.wake()
	ev := waitEvents(t, fb, "the handover", func(ev []string) bool { return countPrefix(ev, "resign") == 1 })
	if countPrefix(ev, "step_down q to other") != 1 {
		t.Fatalf("events %v: want a step-down naming other", ev)
	}
	waitFor(t, "the member record says drained", func() bool { return self().Drained })
}

// While a drained node still leads some of its queues, a live replica
// starts no rebalancing batch of its own (the counts it sees while the
// drain's handovers land are transient), for at most handoverBound.
func TestNoBatchWhileDraining(t *testing.T) {
	qs, names := numberedQueues(90)
	c := drainCluster{now: time.Unix(1000, 0), qs: qs, leader: map[string]string{},
		members: []string{"self", "a", "b"}, drained: []string{"self"}}
	// a 40, b 20, self (drained) 30.
	for i, n := range names {
		switch {
		case i < 40:
			c.leader[n] = "a"
		case i < 60:
			c.leader[n] = "b"
		default:
			c.leader[n] = "self"
		}
	}
	bl := newTestBalancer("a", qs, true)
	if y := sortActions(bl.decide(c.input("a"))).yields; len(y) != 0 {
		t.Fatalf("a hands over %v while self drains", y)
	}
	c.now = c.now.Add(bl.handoverBound())
	if y := sortActions(bl.decide(c.input("a"))).yields; len(y) == 0 {
		t.Fatal("a still waits for a drain that has not moved for handoverBound")
	}
	// Drain done (self leads nothing): a balances at once.
	bl = newTestBalancer("a", qs, true)
	for i, n := range names {
		if i >= 60 {
			c.leader[n] = "b"
		}
	}
	if y := sortActions(bl.decide(c.input("a"))).yields; len(y) != 0 {
		t.Fatalf("a 40, b 50: a hands over %v", y)
	}
}
