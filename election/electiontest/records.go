package electiontest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/regentd/regent/election"
)

// testRecords checks the leader and member records as a read-only backend
// that never campaigned sees them (testReadOnly checks that it cannot
// campaign).
func testRecords(e *env) {
	t := e.t
	a, b := e.replica("a"), e.replica("b")
	reader := e.reader()
	ctx := e.ctx()
	if err := a.SetMember(ctx, election.RoleLeader, payload(map[string]string{"cfg": "a"})); err != nil {
		t.Fatalf("set member a: %v", err)
	}
	if err := b.SetMember(ctx, election.RoleFollower, payload(map[string]string{"cfg": "b"})); err != nil {
		t.Fatalf("set member b: %v", err)
	}
	before := time.Now()
	want := payload(map[string]any{"concurrency": 2, "command": []string{"work", "--fast"}})
	la := e.campaign(a, "q", want)

	rec := e.leader(reader, "q")
	if rec.Err != nil {
		t.Fatalf("record has Err %v", rec.Err)
	}
	if rec.Cluster != e.cluster || rec.Queue != "q" || rec.Node != "a" || rec.Host != "host-a" ||
		rec.PID != os.Getpid() || rec.Term != la.Term() {
		t.Errorf("leader record %+v, want cluster %s queue q node a host host-a pid %d term %d",
			rec, e.cluster, os.Getpid(), la.Term())
	}
	if !sameJSON(rec.Payload, want) {
		t.Errorf("leader payload %s, want %s", rec.Payload, want)
	}
	// Clocks of this host and the backend's agree within a few seconds.
	if rec.ElectedAt.Before(before.Add(-5*time.Second)) || rec.ElectedAt.After(time.Now().Add(5*time.Second)) {
		t.Errorf("ElectedAt %v, want about %v", rec.ElectedAt, before)
	}

	recs, err := reader.Leaders(ctx)
	if err != nil {
		t.Fatalf("leaders: %v", err)
	}
	if len(recs) != 1 || recs[0].Queue != "q" || recs[0].Node != "a" || recs[0].Term != la.Term() {
		t.Errorf("leaders %+v, want one record of q led by a", recs)
	}
	if _, err := reader.Leader(ctx, "nobody"); !errors.Is(err, election.ErrNoLeader) {
		t.Errorf("leader of a queue never led: %v, want ErrNoLeader", err)
	}

	members, err := reader.Members(ctx)
	if err != nil {
		t.Fatalf("members: %v", err)
	}
	wantRoles := map[string]string{"a": election.RoleLeader, "b": election.RoleFollower}
	if len(members) != len(wantRoles) {
		t.Errorf("members %+v, want a and b", members)
	}
	for _, m := range members {
		if m.Err != nil {
			t.Errorf("member %s has Err %v", m.Node, m.Err)
			continue
		}
		if m.Cluster != e.cluster || m.Role != wantRoles[m.Node] || m.Host != "host-"+m.Node || m.PID != os.Getpid() {
			t.Errorf("member record %+v, want role %q host host-%s pid %d", m, wantRoles[m.Node], m.Node, os.Getpid())
		}
		if !sameJSON(m.Payload, payload(map[string]string{"cfg": m.Node})) {
			t.Errorf("member %s payload %s", m.Node, m.Payload)
		}
		if m.LastSeen.IsZero() {
			t.Errorf("member %s has no LastSeen", m.Node)
		}
	}
}

// testMembersEnd checks that member records vanish when their session ends:
// at once on Close, within about a TTL when the session is killed.
func testMembersEnd(e *env) {
	t := e.t
	a, b := e.replica("a"), e.replica("b")
	reader := e.reader()
	for _, r := range []election.Backend{a, b} {
		if err := r.SetMember(e.ctx(), election.RoleFollower, payload("x")); err != nil {
			t.Fatalf("set member: %v", err)
		}
	}
	waitMembers(e, reader, prompt, "a", "b")

	if err := b.Close(e.ctx()); err != nil {
		t.Fatalf("close b: %v", err)
	}
	waitMembers(e, reader, prompt, "a")

	e.h.KillSession(t, a)
	waitMembers(e, reader, takeover)
}

// waitMembers waits up to d until the live members are exactly nodes.
func waitMembers(e *env, reader election.Backend, d time.Duration, nodes ...string) {
	e.t.Helper()
	eventually(e.t, d, func() error {
		ms, err := reader.Members(e.ctx())
		if err != nil {
			return err
		}
		var got []string
		for _, m := range ms {
			got = append(got, m.Node)
		}
		slices.Sort(got)
		if !slices.Equal(got, nodes) {
			return fmt.Errorf("members %v, want %v", got, nodes)
		}
		return nil
	})
}

// testPublishAndChanges checks that Publish changes what readers see and
// that Changes wakes on leader and member changes and closes with its ctx.
func testPublishAndChanges(e *env) {
	t := e.t
	a := e.replica("a")
	reader := e.reader()
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	changes := reader.Changes(watchCtx)

	la := e.campaign(a, "q", payload(map[string]int{"v": 1}))
	woken(t, changes, prompt, "a new leader")

	drain(changes)
	v2 := payload(map[string]int{"v": 2})
	if err := la.Publish(e.ctx(), v2); err != nil {
		t.Fatalf("publish: %v", err)
	}
	if rec := e.leader(reader, "q"); !sameJSON(rec.Payload, v2) || rec.Term != la.Term() {
		t.Errorf("after publish the reader sees payload %s term %d, want %s term %d", rec.Payload, rec.Term, v2, la.Term())
	}
	woken(t, changes, prompt, "a publish")

	drain(changes)
	if err := a.SetMember(e.ctx(), election.RoleLeader, payload("m")); err != nil {
		t.Fatalf("set member: %v", err)
	}
	woken(t, changes, prompt, "a member record")

	drain(changes)
	e.resign(la)
	woken(t, changes, prompt, "a resign")
	if err := la.Publish(e.ctx(), v2); !errors.Is(err, election.ErrNotLeader) {
		t.Errorf("publish after resign: %v, want ErrNotLeader", err)
	}

	// A change made right after Changes returns is not missed, even if
	// the backend sets up its watch in the background.
	for i := range 10 {
		ctx, cancel := context.WithCancel(context.Background())
		ch := reader.Changes(ctx)
		err := a.SetMember(e.ctx(), election.RoleFollower, payload(i))
		if err != nil {
			cancel()
			t.Fatalf("set member: %v", err)
		}
		woken(t, ch, prompt, fmt.Sprintf("a member change made right after Changes returned (try %d)", i))
		cancel()
	}

	stopWatch()
	eventually(t, prompt, func() error {
		select {
		case _, ok := <-changes:
			if !ok {
				return nil
			}
		default:
		}
		return errors.New("Changes channel still open after its ctx was cancelled")
	})
}

// testCorruptRecord overwrites a leader record with garbage: readers get an
// error wrapping ErrCorruptRecord, other records stay readable, nothing
// panics.
func testCorruptRecord(e *env) {
	t := e.t
	a := e.replica("a")
	reader := e.reader()
	e.campaign(a, "bad", payload("a"))
	lgood := e.campaign(a, "good", payload("a"))
	e.h.CorruptLeader(t, e.cluster, "bad")

	for name, b := range map[string]election.Backend{"reader": reader, "leader": a} {
		if _, err := b.Leader(e.ctx(), "bad"); !errors.Is(err, election.ErrCorruptRecord) {
			t.Errorf("%s: Leader of a corrupt record: %v, want ErrCorruptRecord", name, err)
		}
		recs, err := b.Leaders(e.ctx())
		if err != nil {
			t.Fatalf("%s: Leaders with a corrupt record: %v", name, err)
		}
		var bad, good bool
		for _, r := range recs {
			switch r.Queue {
			case "bad":
				bad = true
				if !errors.Is(r.Err, election.ErrCorruptRecord) {
					t.Errorf("%s: corrupt record returned with Err %v, want ErrCorruptRecord", name, r.Err)
				}
			case "good":
				good = r.Err == nil && r.Node == "a" && r.Term == lgood.Term()
			}
		}
		if !bad {
			t.Errorf("%s: Leaders dropped the corrupt record: %+v", name, recs)
		}
		if !good {
			t.Errorf("%s: Leaders lost the good record: %+v", name, recs)
		}
	}
}

// testStepDownRequest checks that a step-down request is stored for the
// leader to find and wakes Changes, and needs a leader.
func testStepDownRequest(e *env) {
	t := e.t
	a := e.replica("a")
	reader := e.reader()
	la := e.campaign(a, "q", payload("a"))
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	changes := a.Changes(watchCtx)

	if _, ok, err := a.StepDownRequest(e.ctx(), "q"); err != nil || ok {
		t.Fatalf("step-down request before any: ok %v err %v", ok, err)
	}
	drain(changes)
	requested := time.Now()
	if err := reader.RequestStepDown(e.ctx(), "q", "b"); err != nil {
		t.Fatalf("request step-down: %v", err)
	}
	woken(t, changes, prompt, "a step-down request")
	req, ok, err := a.StepDownRequest(e.ctx(), "q")
	if err != nil || !ok {
		t.Fatalf("step-down request after one: ok %v err %v", ok, err)
	}
	if req.Queue != "q" || req.To != "b" || req.Term != la.Term() {
		t.Errorf("step-down request %+v, want queue q to b term %d", req, la.Term())
	}
	if req.RequestedAt.Before(requested.Add(-5*time.Second)) || req.RequestedAt.After(time.Now().Add(5*time.Second)) {
		t.Errorf("RequestedAt %v, want about %v", req.RequestedAt, requested)
	}
	if err := reader.RequestStepDown(e.ctx(), "nobody", ""); !errors.Is(err, election.ErrNoLeader) {
		t.Errorf("step-down of a queue without leader: %v, want ErrNoLeader", err)
	}
}
