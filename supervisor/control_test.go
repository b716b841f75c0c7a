package supervisor

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/control"
	"github.com/regentd/regent/supervisor/diagnosis"
)

// memberQueue decodes what the harness's member record says of queue q.
func (h *harness) memberQueue(t *testing.T, q string) diagnosis.MemberQueue {
	t.Helper()
	ms, _ := h.fb.Members(context.Background())
	for _, m := range ms {
		p, err := diagnosis.DecodeMemberPayload(m.Payload)
		if err == nil {
			return p.Queues[q]
		}
	}
	return diagnosis.MemberQueue{}
}

func count(events []string, ev string) int {
	n := 0
	for _, e := range events {
		if e == ev {
			n++
		}
	}
	return n
}

// renewForever keeps l renewed until the test ends.
func renewForever(t *testing.T, l *fakeLeadership) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			l.renew(time.Now().Add(time.Second))
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

// A leader elected while its queue is paused starts no pool, and says so
// in its member record; a resume starts the pool in the same term; a
// pause stops it gracefully (no fence) and keeps the leadership.
func TestPauseStopsAndResumeStartsThePool(t *testing.T) {
	h := startHarness(t, false)
	ctx := context.Background()
	_ = h.fb.PutControl(ctx, control.KindPause, "q", control.Encode(control.Pause{Since: time.Now(), By: "op@host", Reason: "migration"}))
	l := newFakeLeadership("q", 3, time.Now().Add(time.Second))
	renewForever(t, l)
	h.fb.grant <- l
	waitFor(t, "paused in the member record", func() bool {
		mq := h.memberQueue(t, "q")
		return mq.Role == "leader" && mq.Paused
	})
	if slices.Contains(h.fb.Events(), "pool_start") {
		t.Fatal("a leader elected while paused started its pool")
	}
	if !h.sup.Leads("q") {
		t.Fatal("a paused leader does not lead")
	}

	_ = h.fb.DeleteControl(ctx, control.KindPause, "q")
	p := h.pool(t)
	waitFor(t, "pool running", func() bool { return slices.Contains(h.fb.Events(), "pool_start") })
	waitFor(t, "not paused in the member record", func() bool { return !h.memberQueue(t, "q").Paused })

	_ = h.fb.PutControl(ctx, control.KindPause, "q", control.Encode(control.Pause{Since: time.Now(), By: "op@host"}))
	waitFor(t, "pool stopped", func() bool { return slices.Contains(h.fb.Events(), "pool_stop") })
	select {
	case <-p.fenced:
		t.Fatal("a pause fenced the workers instead of stopping them")
	default:
	}
	waitFor(t, "paused again", func() bool { return h.memberQueue(t, "q").Paused })
	if ev := h.fb.Events(); slices.Contains(ev, "resign") || !h.sup.Leads("q") {
		t.Fatalf("the pause ended the leadership: %v", ev)
	}
	for _, want := range []string{`"paused"`, `"resumed"`} {
		if !strings.Contains(h.logBuf.String(), want[1:len(want)-1]) {
			t.Errorf("no %s event logged", want)
		}
	}
}

// The observer's last read may predate a pause recorded an instant
// before the win, its wake-up still on the way: the new leader reads
// the records itself and starts no worker.
func TestLeaderWonJustAfterAPauseStartsNoWorker(t *testing.T) {
	h := startHarness(t, false)
	ctx := context.Background()
	waitFor(t, "the first observation", func() bool { return h.sup.obs.lastControl.Load() != nil })
	h.fb.mute(true)
	_ = h.fb.PutControl(ctx, control.KindPause, "q", control.Encode(control.Pause{Since: time.Now(), By: "op@host"}))
	l := newFakeLeadership("q", 3, time.Now().Add(time.Second))
	renewForever(t, l)
	h.fb.grant <- l
	// Within 2 s: before the observer's next safety-net read (5 s).
	waitWithin(t, 2*time.Second, "paused in the member record", func() bool {
		mq := h.memberQueue(t, "q")
		return mq.Role == "leader" && mq.Paused
	})
	if ev := h.fb.Events(); slices.Contains(ev, "pool_start") {
		t.Fatalf("a leader won just after a pause started its pool: %v", ev)
	}
}

// A restart request is carried out once in place (no new pool, no new
// term) and its id published; one made before the term began is found
// done without a restart.
func TestRestartRequestCarriedOutOnce(t *testing.T) {
	h := startHarness(t, false)
	ctx := context.Background()
	old := control.Restart{ID: "old", At: time.Now().Add(-time.Minute), By: "op@host"}
	_ = h.fb.PutControl(ctx, control.KindRestart, "q", control.Encode(old))
	l := newFakeLeadership("q", 4, time.Now().Add(time.Second))
	renewForever(t, l)
	h.fb.grant <- l
	h.pool(t)
	waitFor(t, "old request found done", func() bool { return h.memberQueue(t, "q").RestartID == "old" })
	if ev := h.fb.Events(); slices.ContainsFunc(ev, func(e string) bool { return strings.HasPrefix(e, "pool_restart") }) {
		t.Fatalf("a request older than the term restarted the workers: %v", ev)
	}

	req := control.Restart{ID: "new", Rolling: true, At: time.Now(), By: "op@host"}
	_ = h.fb.PutControl(ctx, control.KindRestart, "q", control.Encode(req))
	waitFor(t, "new request done", func() bool { return h.memberQueue(t, "q").RestartID == "new" })
	h.fb.wake() // another observation: the request is not carried out twice
	waitFor(t, "logged", func() bool { return strings.Contains(h.logBuf.String(), "workers_restarted") })
	ev := h.fb.Events()
	if count(ev, "pool_restart rolling") != 1 || count(ev, "pool_start") != 1 || slices.Contains(ev, "resign") {
		t.Errorf("events %v: want one rolling restart of the one pool, no resign", ev)
	}
}

// A reload hands the leader new settings: the pool is reconfigured and
// its workers restarted in place (rolling); a new concurrency replaces the
// pool within the same leadership.
func TestReloadRestartsTheLeadersWorkers(t *testing.T) {
	h := startHarness(t, false)
	l := newFakeLeadership("q", 5, time.Now().Add(time.Second))
	renewForever(t, l)
	h.fb.grant <- l
	h.pool(t)
	q := queueCfg("q", 8192)
	if err := h.sup.Reload(context.Background(), []config.QueueConfig{q}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "rolling restart", func() bool { return slices.Contains(h.fb.Events(), "pool_restart rolling") })
	waitFor(t, "new config published", func() bool {
		var got config.Published
		b, _ := json.Marshal(h.memberQueue(t, "q").Config)
		_ = json.Unmarshal(b, &got)
		return got.MaxRSSMB == 8192
	})

	q.Concurrency = 2
	if err := h.sup.Reload(context.Background(), []config.QueueConfig{q}); err != nil {
		t.Fatal(err)
	}
	h.pool(t) // a second pool of the same term
	waitFor(t, "old pool stopped", func() bool { return slices.Contains(h.fb.Events(), "pool_stop") })
	if ev := h.fb.Events(); slices.Contains(ev, "resign") {
		t.Errorf("a reload ended the leadership: %v", ev)
	}
}

// A reload that adds a queue campaigns for it; one that removes a led
// queue stops its workers gracefully and resigns it.
func TestReloadAddsAndRemovesQueues(t *testing.T) {
	h := startHarness(t, false)
	lq := newFakeLeadership("q", 6, time.Now().Add(time.Second))
	renewForever(t, lq)
	h.fb.grant <- lq
	pq := h.pool(t)
	if err := h.sup.Reload(context.Background(), []config.QueueConfig{queueCfg("q", 4096), queueCfg("r", 4096)}); err != nil {
		t.Fatal(err)
	}
	lr := newFakeLeadership("r", 1, time.Now().Add(time.Second))
	renewForever(t, lr)
	select {
	case h.fb.grant <- lr: // taken by r's new runner: q's leads
	case <-time.After(5 * time.Second):
		t.Fatal("nobody campaigns for the added queue")
	}
	h.pool(t)
	waitFor(t, "r led", func() bool { return h.sup.Leads("r") })

	if err := h.sup.Reload(context.Background(), []config.QueueConfig{queueCfg("r", 4096)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "q resigned", func() bool { return slices.Contains(h.fb.Events(), "resign") })
	select {
	case <-pq.fenced:
		t.Error("the removed queue's workers were fenced, not stopped")
	default:
	}
	if h.sup.Leads("q") || !h.sup.Leads("r") {
		t.Errorf("after removing q: leads q=%v r=%v", h.sup.Leads("q"), h.sup.Leads("r"))
	}
	if !strings.Contains(h.logBuf.String(), "config_reloaded") {
		t.Error("no config_reloaded event")
	}
}
