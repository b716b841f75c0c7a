package supervisor

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/regentd/regent/control"
	"github.com/regentd/regent/election"
	"github.com/regentd/regent/supervisor/diagnosis"
)

// memberPublisher republishes this replica's member record whenever woken
// (a leadership started or ended, workers changed, conflicts changed) and
// now and then for the workers' RSS. It reads the runners' statuses and
// keeps only the last record written, on its own goroutine.
type memberPublisher struct {
	cfg     *Config // read only
	log     hclog.Logger
	runners []*queueRunner
	// set returns the current runners (a reload adds or removes some).
	set   func() []*queueRunner
	wakeC chan struct{}
	// drained: this replica obeys a drain of its node (set by the
	// observer).
	drained atomic.Bool
}

func newMemberPublisher(cfg *Config) *memberPublisher {
	return &memberPublisher{cfg: cfg, log: cfg.Logger, wakeC: make(chan struct{}, 1)}
}

// wake asks for the record to be republished; it never blocks.
func (p *memberPublisher) wake() {
	select {
	case p.wakeC <- struct{}{}:
	default:
	}
}

// setDrained sets the record's drained flag, and republishes on a change.
func (p *memberPublisher) setDrained(drained bool) {
	if p.drained.Swap(drained) != drained {
		p.wake()
	}
}

// run writes the member record whenever woken, until ctx ends.
func (p *memberPublisher) run(ctx context.Context, b election.Backend) {
	var last []byte
	// Worker RSS changes without events: republish it now and then (a
	// write only when the payload changed, at most every 5 s).
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.wakeC:
		case <-tick.C:
		}
		payload, role := p.payload()
		if string(payload) == string(last) {
			continue
		}
		if err := b.SetMember(ctx, role, payload); err != nil {
			if ctx.Err() != nil {
				return
			}
			p.cfg.Metrics.backendError()
			p.log.Warn("member record update failed", "error", err)
			// Try again after a pause.
			if sleepCtx(ctx, p.cfg.RetryInterval) != nil {
				return
			}
			p.wake()
			continue
		}
		last = payload
		// No pacing sleep here: a 250 ms pause after each write made a
		// Postgres leader with a slow backend path miss its renewals
		// (TestMatrixLatency/under/postgres failed every time with it).
		// Followers watch only their queue's keys (etcd), so a write no
		// longer fans out to every standing-by campaign.
	}
}

// payload encodes the member record from the runners' statuses, and
// returns it with this replica's role (leader if it leads any queue).
func (p *memberPublisher) payload() ([]byte, string) {
	if p.set != nil {
		p.runners = p.set()
	}
	queues := make(map[string]diagnosis.MemberQueue, len(p.runners))
	role := election.RoleFollower
	for _, r := range p.runners {
		st := r.current()
		mq := diagnosis.MemberQueue{Role: st.role, Config: r.config().published, Conflicts: st.conflicts}
		if st.role == election.RoleLeader {
			role = election.RoleLeader
			mq.Term = st.term
			mq.Since = st.since
			mq.WorkerTerms = []int64{st.term}
			mq.Paused, mq.RestartID = st.paused, st.restartID
			if st.pool != nil {
				mq.Workers = st.pool.Workers()
				for _, w := range mq.Workers {
					if w.State == "degraded" {
						mq.Degraded = true
					}
				}
			}
		}
		queues[r.queue.Name] = mq
	}
	mp := diagnosis.NewMemberPayload(p.cfg.Version, queues)
	mp.HTTPAddr = p.cfg.HTTPAddr
	mp.Features = control.Features
	mp.Drained = p.drained.Load()
	b, _ := json.Marshal(mp)
	return b, role
}
