package electiontest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/regentd/regent/election"
)

// tracker checks, as leaderships are taken and released, that no two
// replicas hold one queue at once and that terms increase.
type tracker struct {
	mu       sync.Mutex
	holder   string // node holding now, "" if none
	lastTerm int64
	history  []string // "node@term" in order
	faults   []string
}

// acquire records that node holds the queue from now with term.
func (tr *tracker) acquire(node string, term int64) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.holder != "" {
		tr.faults = append(tr.faults, fmt.Sprintf("%s won term %d while %s still held the queue", node, term, tr.holder))
	}
	if term <= tr.lastTerm {
		tr.faults = append(tr.faults, fmt.Sprintf("%s won term %d after term %d", node, term, tr.lastTerm))
	}
	tr.holder, tr.lastTerm = node, term
	tr.history = append(tr.history, fmt.Sprintf("%s@%d", node, term))
}

// release records that node stops holding the queue now.
func (tr *tracker) release(node string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.holder == node {
		tr.holder = ""
	}
}

// count returns how many leaderships were taken.
func (tr *tracker) count() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.history)
}

// testExclusion runs five replicas that campaign for one queue in a loop,
// hold it briefly and resign, and checks continuously that at most one
// holds it at any instant.
func testExclusion(e *env) {
	const (
		replicas  = 5
		handovers = 20
		hold      = 30 * time.Millisecond // simulated work while leading
	)
	t := e.t
	reader := e.reader()
	var tr tracker
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	for i := range replicas {
		node := fmt.Sprintf("n%d", i+1)
		b := e.replica(node)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				l, err := b.Campaign(ctx, "q", payload(map[string]string{"node": node}))
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("%s: campaign: %v", node, err)
						cancel()
					}
					return
				}
				tr.acquire(node, l.Term())
				err = checkHeld(ctx, reader, l, node, hold)
				tr.release(node)
				if err != nil && ctx.Err() == nil {
					t.Errorf("%s: %v", node, err)
					cancel()
				}
				rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
				err = l.Resign(rctx)
				rcancel()
				if err != nil {
					t.Errorf("%s: resign: %v", node, err)
					cancel()
					return
				}
				if tr.count() >= handovers {
					cancel()
				}
			}
		}()
	}
	select {
	case <-ctx.Done():
	case <-time.After(60 * time.Second):
		t.Errorf("only %d leaderships in 60s", tr.count())
	}
	cancel()
	wg.Wait()

	tr.mu.Lock()
	defer tr.mu.Unlock()
	t.Logf("leaderships: %s", strings.Join(tr.history, " "))
	for _, f := range tr.faults {
		t.Error(f)
	}
	leaders := map[string]bool{}
	for _, h := range tr.history {
		leaders[strings.Split(h, "@")[0]] = true
	}
	if len(tr.history) >= handovers && len(leaders) < 2 {
		t.Errorf("one replica won all %d campaigns: followers starve", len(tr.history))
	}
}

// checkHeld holds l for d, failing if it is lost meanwhile, and checks that
// the record a reader sees names node and l's term.
func checkHeld(ctx context.Context, reader election.Backend, l election.Leadership, node string, d time.Duration) error {
	rec, err := reader.Leader(ctx, l.Queue())
	if err != nil {
		return fmt.Errorf("reader: leader: %w", err)
	}
	if rec.Node != node || rec.Term != l.Term() {
		return fmt.Errorf("reader sees %s@%d while %s holds term %d", rec.Node, rec.Term, node, l.Term())
	}
	select {
	case <-l.Done():
		return errors.New("leadership lost while held, with a healthy session")
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return nil
	}
}

// testTermsIncrease hands one queue over twenty times between two replicas
// (sometimes to the same one again) and checks that terms strictly grow and
// match the published record, and that a resigned queue has no leader.
func testTermsIncrease(e *env) {
	t := e.t
	bs := []election.Backend{e.replica("a"), e.replica("b")}
	reader := e.reader()
	var last int64
	for i := range 20 {
		// a b b a a b b a ...: every other handover stays on one replica.
		b := bs[(i+1)/2%2]
		l := e.campaign(b, "q", payload(map[string]int{"i": i}))
		if l.Term() <= last {
			t.Fatalf("handover %d: term %d after term %d", i, l.Term(), last)
		}
		last = l.Term()
		if rec := e.leader(reader, "q"); rec.Term != l.Term() {
			t.Fatalf("handover %d: record term %d, leadership term %d", i, rec.Term, l.Term())
		}
		e.resign(l)
		if _, err := reader.Leader(e.ctx(), "q"); !errors.Is(err, election.ErrNoLeader) {
			t.Fatalf("handover %d: after resign, Leader returned %v, want ErrNoLeader", i, err)
		}
	}
}
