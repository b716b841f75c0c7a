package etcdbackend

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/regentd/regent/election"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Leader returns the leader record of queue, or an error wrapping
// election.ErrNoLeader. Term is the leader key's CreateRevision; RenewedAt
// is estimated from the remaining TTL of the leader's lease (etcd reports
// whole seconds, so it is accurate to about one second). An undecodable
// record is returned with Err set, together with an error wrapping
// election.ErrCorruptRecord that names the key. ctx bounds the call
// (DialTimeout when it has no deadline).
func (b *Backend) Leader(ctx context.Context, queue string) (election.LeaderRecord, error) {
	if err := validName("queue", queue); err != nil {
		return election.LeaderRecord{}, err
	}
	octx, end, err := b.op(ctx, false)
	if err != nil {
		return election.LeaderRecord{}, err
	}
	defer end()
	rctx, cancel := b.request(octx)
	defer cancel()
	key := b.keys.leader(queue)
	resp, err := b.cli.Get(rctx, key)
	if err != nil {
		return election.LeaderRecord{}, b.opErr(rctx, "read leader of "+queue, err)
	}
	if len(resp.Kvs) == 0 {
		return election.LeaderRecord{}, fmt.Errorf("%w: queue %s", election.ErrNoLeader, queue)
	}
	kv := resp.Kvs[0]
	rec := decodeLeader(b.opts.Cluster, queue, key, kv.CreateRevision, kv.Value)
	rec.RenewedAt = newLeaseAges(b).renewedAt(rctx, kv.Lease)
	return rec, rec.Err
}

// Leaders returns the leader records of every led queue of the cluster,
// sorted by queue. Undecodable records are returned with Err set.
// ctx bounds the call (DialTimeout when it has no deadline).
func (b *Backend) Leaders(ctx context.Context) ([]election.LeaderRecord, error) {
	octx, end, err := b.op(ctx, false)
	if err != nil {
		return nil, err
	}
	defer end()
	rctx, cancel := b.request(octx)
	defer cancel()
	resp, err := b.cli.Get(rctx, b.keys.queues(), clientv3.WithPrefix())
	if err != nil {
		return nil, b.opErr(rctx, "read leaders", err)
	}
	ages := newLeaseAges(b)
	var out []election.LeaderRecord
	for _, kv := range resp.Kvs {
		queue, ok := b.keys.queueOfLeader(string(kv.Key))
		if !ok {
			continue
		}
		rec := decodeLeader(b.opts.Cluster, queue, string(kv.Key), kv.CreateRevision, kv.Value)
		rec.RenewedAt = ages.renewedAt(rctx, kv.Lease)
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Queue < out[j].Queue })
	return out, nil
}

// Members returns the member records of every live replica of the
// cluster, sorted by node. A member key lives only as long as its lease,
// so every record returned belongs to a replica renewing its session;
// LastSeen is estimated from the remaining TTL of that lease (to about one
// second), or is the time the record was written if the lease cannot be
// read. Undecodable records are returned with Err set. ctx bounds the call
// (DialTimeout when it has no deadline).
func (b *Backend) Members(ctx context.Context) ([]election.MemberRecord, error) {
	octx, end, err := b.op(ctx, false)
	if err != nil {
		return nil, err
	}
	defer end()
	rctx, cancel := b.request(octx)
	defer cancel()
	resp, err := b.cli.Get(rctx, b.keys.members(), clientv3.WithPrefix())
	if err != nil {
		return nil, b.opErr(rctx, "read members", err)
	}
	ages := newLeaseAges(b)
	var out []election.MemberRecord
	for _, kv := range resp.Kvs {
		node, ok := b.keys.nodeOfMember(string(kv.Key))
		if !ok {
			continue
		}
		rec := decodeMember(b.opts.Cluster, node, string(kv.Key), kv.Value)
		if seen := ages.renewedAt(rctx, kv.Lease); !seen.IsZero() {
			rec.LastSeen = seen
		}
		out = append(out, rec)
	}
	return out, nil
}

// leaseAges estimates when leases were last renewed, asking etcd once per
// lease.
type leaseAges struct {
	b    *Backend
	seen map[int64]time.Time
}

func newLeaseAges(b *Backend) *leaseAges {
	return &leaseAges{b: b, seen: make(map[int64]time.Time)}
}

// renewedAt returns the wall-clock time lease was last renewed, rounded
// down to the second etcd reports, or the zero time if unknown.
func (a *leaseAges) renewedAt(ctx context.Context, lease int64) time.Time {
	if lease == 0 {
		return time.Time{}
	}
	if t, ok := a.seen[lease]; ok {
		return t
	}
	var t time.Time
	resp, err := a.b.cli.TimeToLive(ctx, clientv3.LeaseID(lease))
	if err == nil && resp.TTL > 0 && resp.GrantedTTL >= resp.TTL {
		age := time.Duration(resp.GrantedTTL-resp.TTL) * time.Second
		t = time.Now().Add(-age).UTC().Round(0)
	}
	a.seen[lease] = t
	return t
}
