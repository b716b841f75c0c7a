package electiontest

import (
	"fmt"
	"reflect"
	"time"

	"github.com/regentd/regent/election"
)

// testControls checks the operator records and the operator log: a record
// written through one backend (a read-only one: operators use those) is
// read by every replica and wakes their Changes; it is replaced and
// deleted in place; it outlives the session of its writer; the log
// returns the newest entries first.
func testControls(e *env) {
	t := e.t
	a := e.replica("a")
	op := e.reader()
	ctx := e.ctx()

	if cs, err := a.Controls(ctx); err != nil || len(cs) != 0 {
		t.Fatalf("Controls of a new cluster: %+v, %v; want none", cs, err)
	}
	changes := a.Changes(ctx)
	drain(changes)
	if err := op.PutControl(ctx, "pause", "q", []byte(`{"by":"ops"}`)); err != nil {
		t.Fatalf("PutControl: %v", err)
	}
	woken(t, changes, prompt, "an operator record written by another backend")
	if err := op.PutControl(ctx, "drain", "node-b", []byte("x")); err != nil {
		t.Fatalf("PutControl: %v", err)
	}
	if err := op.PutControl(ctx, "pause", "q", []byte(`{"by":"ops2"}`)); err != nil {
		t.Fatalf("PutControl (replace): %v", err)
	}
	want := []election.Control{{Kind: "drain", Name: "node-b", Value: []byte("x")}, {Kind: "pause", Name: "q", Value: []byte(`{"by":"ops2"}`)}}
	if cs, err := a.Controls(ctx); err != nil || !reflect.DeepEqual(cs, want) {
		t.Fatalf("Controls: %+v, %v; want %+v", cs, err, want)
	}

	// No lease: the records outlive the writer's backend.
	if err := op.Close(ctx); err != nil {
		t.Fatalf("close the operator's backend: %v", err)
	}
	drain(changes)
	if err := a.DeleteControl(ctx, "drain", "node-b"); err != nil {
		t.Fatalf("DeleteControl: %v", err)
	}
	woken(t, changes, prompt, "an operator record deleted")
	if err := a.DeleteControl(ctx, "drain", "node-b"); err != nil {
		t.Fatalf("DeleteControl of a missing record: %v, want nil", err)
	}
	if cs, err := e.reader().Controls(ctx); err != nil || !reflect.DeepEqual(cs, want[1:]) {
		t.Fatalf("Controls after the delete, from a new backend: %+v, %v; want %+v", cs, err, want[1:])
	}

	at := time.Now().UTC().Truncate(time.Millisecond)
	for i := range 3 {
		act := election.Action{At: at.Add(time.Duration(i) * time.Second), Action: "pause", Target: "q", By: fmt.Sprintf("ops%d@host", i), Reason: "migration"}
		if err := a.RecordAction(ctx, act); err != nil {
			t.Fatalf("RecordAction: %v", err)
		}
	}
	got, err := a.Actions(ctx, 2)
	if err != nil || len(got) != 2 || got[0].By != "ops2@host" || got[1].By != "ops1@host" || !got[0].At.Equal(at.Add(2*time.Second)) || got[0].Reason != "migration" {
		t.Fatalf("Actions(2): %+v, %v; want ops2 then ops1, newest first", got, err)
	}
}
