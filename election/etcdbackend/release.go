package etcdbackend

import (
	"context"
	"fmt"
	"time"

	"github.com/regentd/regent/election"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// release deletes the leader key of queue if, and only if, its
// CreateRevision is term, and in the same transaction records the term as
// released cleanly, so that followers take over without holding back. It
// reports whether the key was deleted. The term's history records it as
// resigned.
func (b *Backend) release(ctx context.Context, queue string, term int64) (bool, error) {
	return b.releaseAs(ctx, queue, term, election.EndResign)
}

// releaseAs is release with the end reason to record in the term's
// history (see releasedValue).
func (b *Backend) releaseAs(ctx context.Context, queue string, term int64, reason string) (bool, error) {
	lk := b.keys.leader(queue)
	rv := mustJSON(releasedValue{Term: term, Reason: reason, At: time.Now().UTC().Round(0)})
	resp, err := b.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(lk), "=", term)).
		Then(clientv3.OpDelete(lk), clientv3.OpPut(b.keys.released(queue), rv)).
		Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// ReleaseTerm deletes the leader key of queue if, and only if, its term is
// still term, and marks the release clean: followers are woken by their
// watch and take over at once. It returns nil as well when the queue no
// longer holds term. Only call it once every worker of term is dead.
// Works on a read-only backend. ctx bounds the request (DialTimeout when
// it has no deadline).
func (b *Backend) ReleaseTerm(ctx context.Context, queue string, term int64) error {
	if err := validName("queue", queue); err != nil {
		return err
	}
	if term <= 0 {
		return fmt.Errorf("etcd: release term %d of %s: terms are positive", term, queue)
	}
	octx, end, err := b.op(ctx, false)
	if err != nil {
		return err
	}
	defer end()
	rctx, cancel := b.request(octx)
	defer cancel()
	ok, err := b.releaseAs(rctx, queue, term, election.EndReleased)
	if err != nil {
		return b.opErr(rctx, fmt.Sprintf("release term %d of %s", term, queue), err)
	}
	if ok {
		b.log.Info("term released", "queue", queue, "term", term)
	}
	return nil
}

// addPending remembers that this backend's leader key of queue, of term
// (0 if unknown), must be released once etcd answers again.
func (b *Backend) addPending(queue string, term int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if old, ok := b.pending[queue]; ok && term == 0 && old != 0 {
		return
	}
	b.pending[queue] = term
}

// flushPending releases the pending leader keys; those it cannot release
// stay pending.
func (b *Backend) flushPending(ctx context.Context) {
	b.mu.Lock()
	if len(b.pending) == 0 {
		b.mu.Unlock()
		return
	}
	pending := make(map[string]int64, len(b.pending))
	for q, t := range b.pending {
		pending[q] = t
	}
	b.mu.Unlock()
	for q, t := range pending {
		err := b.releasePending(ctx, q, t)
		if err != nil {
			b.log.Debug("cannot release a leader key yet", "queue", q, "term", t, "error", err)
			continue
		}
		b.mu.Lock()
		if cur, ok := b.pending[q]; ok && cur == t {
			delete(b.pending, q)
		}
		b.mu.Unlock()
	}
}

// releasePending releases this backend's leader key of queue for term; if
// term is 0 (an attempt whose outcome is unknown) it releases the key if
// it is attached to this backend's lease and no campaign or leadership of
// this backend is using it.
func (b *Backend) releasePending(ctx context.Context, queue string, term int64) error {
	if term == 0 {
		resp, err := b.cli.Get(ctx, b.keys.leader(queue))
		if err != nil {
			return err
		}
		if len(resp.Kvs) == 0 || resp.Kvs[0].Lease != int64(b.lease) {
			return nil
		}
		b.mu.Lock()
		qs := b.queues[queue]
		busy := qs != nil && (qs.campaigning || qs.active != nil)
		b.mu.Unlock()
		if busy {
			return nil // that campaign or leadership owns the key
		}
		term = resp.Kvs[0].CreateRevision
	}
	reason := election.EndResign
	b.mu.Lock()
	if qs := b.queues[queue]; qs != nil && qs.expiredTerm == term {
		reason = election.EndExpiry // given up when its trust window ran out
	}
	b.mu.Unlock()
	ok, err := b.releaseAs(ctx, queue, term, reason)
	if err != nil {
		return err
	}
	if ok {
		b.log.Debug("leader key released", "queue", queue, "term", term)
	}
	return nil
}
