package etcdbackend

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/regentd/regent/election"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// StepDownTTL is the TTL of the lease a step-down request is written
// with: a request nobody acts on disappears after it. How long candidates
// hold back after a request is each one's election.Timing.StepDownHold.
const StepDownTTL = 30 * time.Second

// stepDownAttempts bounds the tries of RequestStepDown when the leader
// changes under it.
const stepDownAttempts = 3

// RequestStepDown writes a step-down request for the current term of
// queue, on a lease of StepDownTTL; the next leadership of the queue
// deletes it. It returns an error wrapping election.ErrNoLeader if nobody
// leads. Works on a read-only backend. ctx bounds each request
// (DialTimeout when it has no deadline).
func (b *Backend) RequestStepDown(ctx context.Context, queue, to string) error {
	if err := validName("queue", queue); err != nil {
		return err
	}
	if to != "" {
		if err := validName("step-down target", to); err != nil {
			return err
		}
	}
	octx, end, err := b.op(ctx, false)
	if err != nil {
		return err
	}
	defer end()
	for range stepDownAttempts {
		done, err := b.requestStepDown(octx, queue, to)
		if err != nil || done {
			return err
		}
	}
	return fmt.Errorf("etcd: request step-down of %s: the leader kept changing; try again", queue)
}

// requestStepDown makes one attempt; done is false when the leader changed
// between reading the term and writing the request.
func (b *Backend) requestStepDown(ctx context.Context, queue, to string) (done bool, err error) {
	rctx, cancel := b.request(ctx)
	defer cancel()
	lk := b.keys.leader(queue)
	resp, err := b.cli.Get(rctx, lk)
	if err != nil {
		return false, b.opErr(rctx, "read leader of "+queue, err)
	}
	if len(resp.Kvs) == 0 {
		return false, fmt.Errorf("%w: queue %s", election.ErrNoLeader, queue)
	}
	term := resp.Kvs[0].CreateRevision
	lease, err := b.stepDownLease(rctx)
	if err != nil {
		return false, b.opErr(rctx, "grant step-down lease", err)
	}
	val := mustJSON(stepDownValue{To: to, Term: term, RequestedAt: time.Now().UTC().Round(0)})
	tx, err := b.cli.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(lk), "=", term)).
		Then(clientv3.OpPut(b.keys.stepDown(queue), val, clientv3.WithLease(lease))).
		Commit()
	if err == nil && tx.Succeeded {
		b.log.Info("step-down requested", "queue", queue, "term", term, "to", to)
		return true, nil
	}
	// The request was not written. Its lease may carry other requests:
	// it is left to expire.
	if err != nil {
		return false, b.opErr(rctx, "write step-down request of "+queue, err)
	}
	return false, nil
}

// stepDownLeaseShare is how long a step-down lease is used for further
// requests after its grant: a rebalancing replica hands over dozens of
// queues at once, and one lease each would multiply the backend's leases.
// The others measure the hold back from the lease's grant (its remaining
// TTL), so a request on a shared lease holds them back up to this much
// less than the StepDownHold.
const stepDownLeaseShare = time.Second

// stepDownLease returns a lease of StepDownTTL for a step-down request:
// the last one granted, while younger than stepDownLeaseShare, else a new
// one.
func (b *Backend) stepDownLease(ctx context.Context) (clientv3.LeaseID, error) {
	b.sdMu.Lock()
	defer b.sdMu.Unlock()
	if b.sdLease != 0 && time.Since(b.sdGranted) < stepDownLeaseShare {
		return b.sdLease, nil
	}
	sent := time.Now()
	grant, err := b.cli.Grant(ctx, int64(StepDownTTL/time.Second))
	if err != nil {
		return 0, err
	}
	b.sdLease, b.sdGranted = grant.ID, sent
	return grant.ID, nil
}

// StepDownRequest returns the pending step-down request of queue; ok is
// false when there is none. An undecodable request gives an error wrapping
// election.ErrCorruptRecord. ctx bounds the request (DialTimeout when it
// has no deadline).
func (b *Backend) StepDownRequest(ctx context.Context, queue string) (election.StepDownRequest, bool, error) {
	if err := validName("queue", queue); err != nil {
		return election.StepDownRequest{}, false, err
	}
	octx, end, err := b.op(ctx, false)
	if err != nil {
		return election.StepDownRequest{}, false, err
	}
	defer end()
	rctx, cancel := b.request(octx)
	defer cancel()
	key := b.keys.stepDown(queue)
	resp, err := b.cli.Get(rctx, key)
	if err != nil {
		return election.StepDownRequest{}, false, b.opErr(rctx, "read step-down request of "+queue, err)
	}
	if len(resp.Kvs) == 0 {
		return election.StepDownRequest{}, false, nil
	}
	req, err := decodeStepDown(queue, key, resp.Kvs[0].Value)
	if err != nil {
		return election.StepDownRequest{}, false, err
	}
	return req, true, nil
}

// StepDownRequests returns every pending step-down request of the
// cluster in one range read. Undecodable requests are skipped.
func (b *Backend) StepDownRequests(ctx context.Context) ([]election.StepDownRequest, error) {
	octx, end, err := b.op(ctx, false)
	if err != nil {
		return nil, err
	}
	defer end()
	rctx, cancel := b.request(octx)
	defer cancel()
	prefix := b.keys.stepDowns()
	resp, err := b.cli.Get(rctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, b.opErr(rctx, "read step-down requests", err)
	}
	out := make([]election.StepDownRequest, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		req, err := decodeStepDown(strings.TrimPrefix(key, prefix), key, kv.Value)
		if err != nil {
			continue
		}
		out = append(out, req)
	}
	return out, nil
}
