package pgbackend

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/internal/testenv"
)

func TestCampaignResignHandover(t *testing.T) {
	url := testenv.NewDatabase(t)
	cluster := randomName("c")
	a := openBackend(t, url, testOpts(cluster, "a"))
	b := openBackend(t, url, testOpts(cluster, "b"))

	la := mustCampaign(t, a, "q", []byte(`{"x": 1,  "y":[1,2]}`))
	if la.Term() < 1 {
		t.Fatalf("term %d", la.Term())
	}
	rec, err := b.Leader(testCtx(t), "q")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Node != "a" || rec.Term != la.Term() || string(rec.Payload) != `{"x": 1,  "y":[1,2]}` {
		t.Fatalf("record %+v payload %s", rec, rec.Payload)
	}

	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	ch := campaignAsync(t, ctx, b, "q", nil)
	select {
	case r := <-ch:
		t.Fatalf("b won while a leads: %+v", r)
	case <-time.After(3 * testOpts("", "").RetryInterval):
	}
	start := time.Now()
	if err := la.Resign(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if !closed(la.Done()) {
		t.Fatal("Done open after Resign")
	}
	r := waitResult(t, ch, 5*time.Second)
	if r.err != nil {
		t.Fatal(r.err)
	}
	took := r.at.Sub(start)
	t.Logf("handover took %s", took)
	if took > 150*time.Millisecond {
		t.Errorf("graceful handover took %s, want a NOTIFY wake-up (< 150ms)", took)
	}
	if r.lead.Term() != la.Term()+1 {
		t.Fatalf("term %d after %d", r.lead.Term(), la.Term())
	}
	if err := la.Resign(testCtx(t)); err != nil {
		t.Fatalf("second resign: %v", err)
	}
	if err := la.Publish(testCtx(t), []byte(`{}`)); !errors.Is(err, election.ErrNotLeader) {
		t.Fatalf("publish after resign: %v", err)
	}
	rec, err = a.Leader(testCtx(t), "q")
	if err != nil || rec.Node != "b" || rec.Payload != nil {
		t.Fatalf("record %+v, %v", rec, err)
	}
}
