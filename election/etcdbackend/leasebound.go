package etcdbackend

import (
	"context"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// leaseBounds remembers, per lease of another replica, the latest bound
// on its last renewal read from etcd, with when it was asked, so that the
// campaigns of many queues led by one replica share one read.
type leaseBounds struct {
	mu     sync.Mutex
	bounds map[int64]leaseBound
}

type leaseBound struct {
	asked time.Time // when the TimeToLive request was sent
	by    time.Time // every renewal etcd had received was sent before by
}

// leaseBoundKeep is how long a bound is kept for sharing.
const leaseBoundKeep = time.Second

// leaseRenewalBound returns a time by which every renewal of lease that
// etcd had received when asked was sent, asked after readAt (the local
// time the campaign's snapshot was answered, or later): a campaign that
// then watches the lease's heartbeats from that snapshot sees every later
// renewal, so the leader cannot trust a renewal sent after the bound
// without the campaign moving its bound forward. ok is false when etcd
// cannot tell (the lease is gone or the request failed): the caller then
// assumes a renewal just now.
//
// etcd reports the remaining TTL rounded down to whole seconds: the lease
// was last renewed (received, so sent earlier) at least
// granted - remaining - 1 seconds before the answer.
func (b *Backend) leaseRenewalBound(ctx context.Context, lease int64, readAt time.Time) (time.Time, bool) {
	b.renewalBounds.mu.Lock()
	if lb, ok := b.renewalBounds.bounds[lease]; ok && !lb.asked.Before(readAt) {
		b.renewalBounds.mu.Unlock()
		return lb.by, true
	}
	b.renewalBounds.mu.Unlock()

	rctx, end, err := b.campaignRequest(ctx)
	if err != nil {
		return time.Time{}, false
	}
	defer end()
	asked := time.Now()
	resp, err := b.cli.TimeToLive(rctx, clientv3.LeaseID(lease))
	if err != nil || resp.TTL <= 0 || resp.GrantedTTL <= 0 {
		return time.Time{}, false
	}
	age := time.Duration(resp.GrantedTTL-resp.TTL-1) * time.Second
	if age <= 0 {
		return time.Time{}, false
	}
	by := time.Now().Add(-age)

	b.renewalBounds.mu.Lock()
	defer b.renewalBounds.mu.Unlock()
	if b.renewalBounds.bounds == nil {
		b.renewalBounds.bounds = map[int64]leaseBound{}
	}
	for l, lb := range b.renewalBounds.bounds {
		if time.Since(lb.asked) > leaseBoundKeep {
			delete(b.renewalBounds.bounds, l)
		}
	}
	if lb, ok := b.renewalBounds.bounds[lease]; !ok || lb.asked.Before(asked) {
		b.renewalBounds.bounds[lease] = leaseBound{asked: asked, by: by}
	}
	return by, true
}

// beatReads remembers, per lease of another replica and revision, the
// ModRevision of its heartbeat key as of that revision (see
// campaign.beatsBefore): when a lease ends, the leader keys of every queue
// it held go at one revision, and the campaigns waiting on them share one
// read. A read at a past revision never changes.
type beatReads struct {
	mu    sync.Mutex
	reads map[beatReadKey]beatRead
}

type beatReadKey struct{ lease, rev int64 }

type beatRead struct {
	mod int64     // ModRevision of the heartbeat key (0: none)
	at  time.Time // when it was read
}

// beatReadKeep is how long a heartbeat read is kept for sharing: the
// campaigns of one lease's queues all see its keys go at once.
const beatReadKeep = time.Minute

func (r *beatReads) get(k beatReadKey) (int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	br, ok := r.reads[k]
	return br.mod, ok
}

func (r *beatReads) put(k beatReadKey, mod int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reads == nil {
		r.reads = map[beatReadKey]beatRead{}
	}
	for k, br := range r.reads {
		if time.Since(br.at) > beatReadKeep {
			delete(r.reads, k)
		}
	}
	r.reads[k] = beatRead{mod: mod, at: time.Now()}
}

// heartbeatAt returns the ModRevision of lease's heartbeat key as of rev
// (0 if it did not exist then), read once for all the campaigns that ask.
func (b *Backend) heartbeatAt(ctx context.Context, lease, rev int64) (int64, error) {
	k := beatReadKey{lease: lease, rev: rev}
	if mod, ok := b.beatReads.get(k); ok {
		return mod, nil
	}
	rctx, end, err := b.campaignRequest(ctx)
	if err != nil {
		return 0, err
	}
	defer end()
	if mod, ok := b.beatReads.get(k); ok { // read while this one waited for a slot
		return mod, nil
	}
	resp, err := b.cli.Get(rctx, b.keys.heartbeat(lease), clientv3.WithRev(rev), clientv3.WithKeysOnly())
	if err != nil {
		return 0, b.translate(rctx, "read heartbeat", err)
	}
	var mod int64
	if len(resp.Kvs) > 0 {
		mod = resp.Kvs[0].ModRevision
	}
	b.beatReads.put(k, mod)
	return mod, nil
}
