package etcdbackend

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Changes returns a channel that receives a value whenever a leader,
// member or step-down record of the cluster changes (heartbeats are not
// changes). It holds one value at most: bursts collapse, and a slow reader
// never blocks the watch. Changes reads etcd's current revision before it
// returns (bounded by ctx and DialTimeout) and watches from there, so no
// change made after it returns is missed; if etcd cannot be read, the
// channel starts with a value. When the watch breaks off (etcd restarted
// or unreachable, history compacted) it is re-established, and a value is
// sent since changes may have been missed. The channel is closed when ctx
// is done, the backend closes or the session of a read-write backend is
// lost.
func (b *Backend) Changes(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	octx, end, err := b.op(ctx, false)
	if err != nil {
		close(out)
		return out
	}
	rev := b.revision(octx)
	end()
	if rev == 0 {
		wake(out)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		close(out)
		return out
	}
	b.wg.Add(1)
	b.mu.Unlock()
	cctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.live, cancel)
	go func() {
		defer b.wg.Done()
		defer close(out)
		defer stop()
		defer cancel()
		b.watchChanges(cctx, out, rev)
	}()
	return out
}

// revision returns etcd's current revision, or 0 if it cannot be read.
func (b *Backend) revision(ctx context.Context) int64 {
	rctx, cancel := b.request(ctx)
	defer cancel()
	resp, err := b.cli.Get(rctx, b.keys.root(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0
	}
	return resp.Header.Revision
}

// watchChanges watches the cluster prefix after revision rev (0: from
// now) until ctx ends.
func (b *Backend) watchChanges(ctx context.Context, out chan<- struct{}, rev int64) {
	if rev > 0 {
		rev++
	}
	for ctx.Err() == nil {
		opts := []clientv3.OpOption{clientv3.WithPrefix()}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range b.cli.Watch(wctx, b.keys.root(), opts...) {
			if resp.Err() != nil {
				if resp.CompactRevision != 0 {
					rev = 0
				}
				break
			}
			changed := false
			for _, ev := range resp.Events {
				rev = ev.Kv.ModRevision + 1
				changed = changed || !b.keys.isHeartbeat(string(ev.Kv.Key))
			}
			if changed {
				wake(out)
			}
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		wake(out)
		sleepCtx(ctx, min(b.opts.RetryInterval, 250*time.Millisecond))
	}
}

// wake sends on a wake-up channel of size 1 without blocking.
func wake(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
