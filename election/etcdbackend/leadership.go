package etcdbackend

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/regentd/regent/election"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// leadership is one held leadership of one queue. It implements
// election.Leadership.
type leadership struct {
	b         *Backend
	queue     string
	key       string
	term      int64
	electedAt time.Time

	done      chan struct{}
	renewed   chan struct{}
	stopWatch context.CancelFunc
	lostOnce  sync.Once

	mu       sync.Mutex
	frozen   time.Time // ValidUntil once lost
	resigned bool
}

var _ election.Leadership = (*leadership)(nil)

// Queue is the queue led.
func (l *leadership) Queue() string { return l.queue }

// Term is the CreateRevision of the queue's leader key.
func (l *leadership) Term() int64 { return l.term }

// ValidUntil is the send time of the session's last successful renewal
// plus the lease TTL, on the monotonic clock. Once the leadership is lost
// it no longer moves.
func (l *leadership) ValidUntil() time.Time {
	l.mu.Lock()
	frozen := l.frozen
	l.mu.Unlock()
	if !frozen.IsZero() {
		return frozen
	}
	return l.b.currentValidUntil()
}

// Renewed receives a value after each renewal that moved ValidUntil.
func (l *leadership) Renewed() <-chan struct{} { return l.renewed }

// Done is closed when the leader key is deleted or replaced, the session
// is lost, ValidUntil passes without a renewal, or on Resign or Close.
func (l *leadership) Done() <-chan struct{} { return l.done }

// isDone reports whether Done is closed.
func (l *leadership) isDone() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// notifyRenewed signals Renewed without blocking.
func (l *leadership) notifyRenewed() {
	if l.isDone() {
		return
	}
	select {
	case l.renewed <- struct{}{}:
	default:
	}
}

// reasonClosed is the reason of leaderships ended by Close.
const reasonClosed = "backend closed"

// markLost ends the leadership: it freezes ValidUntil, stops the key
// watch and closes Done. Only the first call has an effect.
func (l *leadership) markLost(reason string) {
	l.lostOnce.Do(func() {
		b := l.b
		b.mu.Lock()
		vu := b.validUntil
		if qs := b.queues[l.queue]; qs != nil {
			if qs.active == l {
				qs.active = nil
			}
			if qs.heldTerm == l.term {
				qs.heldUntil = vu
			}
		}
		b.mu.Unlock()
		l.mu.Lock()
		l.frozen = vu
		resigned := l.resigned
		l.mu.Unlock()
		b.leading.Add(-1)
		l.stopWatch()
		close(l.done)
		if resigned || reason == reasonClosed {
			b.log.Info("leadership given up", "queue", l.queue, "term", l.term, "reason", reason)
		} else {
			b.log.Warn("leadership lost", "queue", l.queue, "term", l.term, "reason", reason)
		}
	})
}

// Publish replaces the payload of the leader record, provided the leader
// key still holds this term. It returns election.ErrNotLeader once the
// leadership is lost. ctx bounds the request (DialTimeout when it has no
// deadline).
func (l *leadership) Publish(ctx context.Context, payload []byte) error {
	b := l.b
	if l.isDone() {
		return fmt.Errorf("%w: queue %s term %d", election.ErrNotLeader, l.queue, l.term)
	}
	octx, end, err := b.op(ctx, true)
	if err != nil {
		return fmt.Errorf("%w: queue %s term %d: %w", election.ErrNotLeader, l.queue, l.term, err)
	}
	defer end()
	rctx, cancel := b.request(octx)
	defer cancel()
	val := mustJSON(leaderValue{
		Cluster: b.opts.Cluster, Queue: l.queue, Node: b.opts.Node, Host: b.opts.Host, PID: b.opts.PID,
		ElectedAt: l.electedAt, Payload: payload,
	})
	resp, err := b.cli.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.term)).
		Then(clientv3.OpPut(l.key, val, clientv3.WithLease(b.lease))).
		Commit()
	if err != nil {
		if l.isDone() {
			return fmt.Errorf("%w: queue %s term %d", election.ErrNotLeader, l.queue, l.term)
		}
		return b.opErr(rctx, "publish leader record of "+l.queue, err)
	}
	if !resp.Succeeded {
		l.markLost("leader key deleted or replaced")
		return fmt.Errorf("%w: queue %s term %d: the leader key is gone", election.ErrNotLeader, l.queue, l.term)
	}
	return nil
}

// Resign closes Done, then deletes the leader key if it still holds this
// term, marking the release clean so that followers take over at once:
// call it only once the leader's work has stopped. If etcd cannot be
// reached the key is released later, once it answers; Close releases it
// too. Resign is idempotent; ctx bounds the request (DialTimeout when it
// has no deadline).
func (l *leadership) Resign(ctx context.Context) error {
	b := l.b
	l.mu.Lock()
	if l.resigned {
		l.mu.Unlock()
		return nil
	}
	l.resigned = true
	l.mu.Unlock()
	l.markLost("resigned")
	octx, end, err := b.op(ctx, true)
	if err != nil {
		return nil // closed: Close released it; session lost: the lease took the key
	}
	defer end()
	rctx, cancel := b.request(octx)
	defer cancel()
	if _, err := b.release(rctx, l.queue, l.term); err != nil {
		b.addPending(l.queue, l.term)
		if b.ctx.Err() != nil || b.sessionLost() {
			return nil
		}
		return b.opErr(rctx, "resign "+l.queue, err)
	}
	return nil
}

// watch follows the leader key from revision rev and marks the leadership
// lost as soon as the key is deleted or replaced. After a broken watch
// (compaction, loss of the etcd leader) it reads the key again and goes
// on from there. It runs until the leadership ends.
func (l *leadership) watch(ctx context.Context, rev int64) {
	b := l.b
	defer b.wg.Done()
	for {
		if reason := l.follow(ctx, rev); reason != "" {
			l.markLost(reason)
			b.noteLost(l)
			return
		}
		// The watch broke off: pause a little so that a watch that keeps
		// failing does not spin, then read the key again.
		if !sleepCtx(ctx, min(b.opts.RetryInterval, 100*time.Millisecond)) {
			return
		}
		gctx, cancel := context.WithTimeout(ctx, b.cfg.DialTimeout)
		resp, err := b.cli.Get(gctx, l.key)
		cancel()
		switch {
		case err != nil:
			b.log.Debug("cannot read leader key", "queue", l.queue, "error", err)
		case len(resp.Kvs) == 0:
			l.markLost("leader key deleted")
			b.noteLost(l)
			return
		case resp.Kvs[0].CreateRevision != l.term:
			l.markLost("leader key replaced")
			return
		default:
			rev = resp.Header.Revision + 1
		}
	}
}

// follow watches the leader key from rev. It returns a reason when the key
// is deleted or replaced, or "" when the watch breaks off or ctx ends.
func (l *leadership) follow(ctx context.Context, rev int64) string {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range l.b.cli.Watch(wctx, l.key, clientv3.WithRev(rev)) {
		if err := resp.Err(); err != nil {
			l.b.log.Debug("leader key watch broke off", "queue", l.queue, "error", err)
			return ""
		}
		for _, ev := range resp.Events {
			if ev.Type == mvccpb.DELETE {
				return "leader key deleted"
			}
			if ev.Kv.CreateRevision != l.term {
				return "leader key replaced"
			}
		}
	}
	return ""
}

// sleepCtx waits for d; false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
