package control

import (
	"errors"
	"testing"
	"time"

	"github.com/regentd/regent/election"
)

func TestParse(t *testing.T) {
	at := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	cs := []election.Control{
		{Kind: KindPause, Name: "emails", Value: Encode(Pause{Since: at, By: "ops@h", Reason: "migration"})},
		{Kind: KindDrain, Name: "node-a", Value: Encode(Drain{Since: at, By: "ops@h"})},
		{Kind: KindRestart, Name: "emails", Value: Encode(Restart{ID: "r1", Rolling: true, At: at, By: "ops@h"})},
		{Kind: KindPause, Name: "broken", Value: []byte("{")},
		{Kind: KindRestart, Name: "noid", Value: []byte(`{"rolling":true}`)},
		{Kind: "newer-kind", Name: "x", Value: []byte("whatever")},
	}
	st := Parse(cs)
	if p, ok := st.Pauses["emails"]; !ok || p.Reason != "migration" || !p.Since.Equal(at) || !st.Paused("emails") {
		t.Errorf("pause: %+v", st.Pauses)
	}
	if !st.Drained("node-a") || st.Drained("node-b") || len(st.DrainedNodes()) != 1 {
		t.Errorf("drains: %+v", st.Drains)
	}
	if r := st.Restarts["emails"]; r.ID != "r1" || !r.Rolling {
		t.Errorf("restart: %+v", st.Restarts)
	}
	if st.Paused("broken") || len(st.Corrupt) != 2 {
		t.Fatalf("corrupt records: %v; want two, without effect", st.Corrupt)
	}
	for _, err := range st.Corrupt {
		if !errors.Is(err, election.ErrCorruptRecord) {
			t.Errorf("%v does not wrap ErrCorruptRecord", err)
		}
	}
}

// Hostile records never panic, and a record either takes effect or is
// reported corrupt (unknown kinds are ignored).
func FuzzParse(f *testing.F) {
	f.Add("pause", "q", []byte(`{"since":"2026-12-06T05:00:00Z","by":"a@b"}`))
	f.Add("restart", "q", []byte(`{"id":"x"}`))
	f.Add("drain", "n", []byte(`null`))
	f.Add("pause", "q", []byte{0xff})
	f.Fuzz(func(t *testing.T, kind, name string, value []byte) {
		st := Parse([]election.Control{{Kind: kind, Name: name, Value: value}})
		took := len(st.Pauses) + len(st.Drains) + len(st.Restarts)
		known := kind == KindPause || kind == KindDrain || kind == KindRestart
		if known && took+len(st.Corrupt) != 1 {
			t.Fatalf("%s %q %q: %d records took effect, %d corrupt", kind, name, value, took, len(st.Corrupt))
		}
		if !known && took+len(st.Corrupt) != 0 {
			t.Fatalf("unknown kind %q took effect", kind)
		}
	})
}
