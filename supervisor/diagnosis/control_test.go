package diagnosis

import (
	"strings"
	"testing"
	"time"

	"github.com/regentd/regent/control"
)

// A paused queue gets its pause record and one paused warning carrying
// the reason; other queues are untouched.
func TestAddControlPause(t *testing.T) {
	reports := []Report{{Queue: "a"}, {Queue: "b"}}
	since := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	AddControl(reports, control.State{Pauses: map[string]control.Pause{"a": {Since: since, By: "op@h", Reason: "migration 42"}}})
	a, b := reports[0], reports[1]
	if a.Paused == nil || a.Paused.By != "op@h" || len(a.Problems) != 1 {
		t.Fatalf("paused queue: %+v", a)
	}
	if p := a.Problems[0]; p.Severity != Warning || p.Code != CodePaused || !strings.Contains(p.Message, "migration 42") {
		t.Errorf("problem %+v", p)
	}
	if b.Paused != nil || len(b.Problems) != 0 {
		t.Errorf("queue not paused: %+v", b)
	}
}
