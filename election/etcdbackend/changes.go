package etcdbackend

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Changes returns a channel that receives a value whenever a leader,
// member or step-down record of the cluster changes (heartbeats are not
// changes). It holds one value at most: bursts collapse, and a slow reader
// never blocks the watch. When the watch breaks off (etcd restarted or
// unreachable, history compacted) it is re-established, and a value is
// sent since changes may have been missed. The channel is closed when ctx
// is done or the backend closes.
func (b *Backend) Changes(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		close(out)
		return out
	}
	b.wg.Add(1)
	b.mu.Unlock()
	cctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.ctx, cancel)
	go func() {
		defer b.wg.Done()
		defer close(out)
		defer stop()
		defer cancel()
		b.watchChanges(cctx, out)
	}()
	return out
}

// watchChanges watches the cluster prefix until ctx ends.
func (b *Backend) watchChanges(ctx context.Context, out chan<- struct{}) {
	var rev int64 // 0: from now
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
			rev = resp.Header.Revision + 1
			for _, ev := range resp.Events {
				if !b.keys.isHeartbeat(string(ev.Kv.Key)) {
					wake(out)
					break
				}
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
