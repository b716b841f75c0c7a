package etcdbackend

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regentd/regent/internal/boottime"
)

// renewal is the outcome of one renewal attempt.
type renewal struct {
	sent time.Time
	err  error
}

// runSession renews the lease every RenewInterval, retries quickly while
// renewals fail, marks every leadership lost when validUntil passes
// without a renewal, and ends the session when etcd says the lease is
// gone. It runs until the session is lost or the backend closes.
func (b *Backend) runSession() {
	defer b.wg.Done()
	results := make(chan renewal, 1)
	inflight := false
	next := time.NewTimer(b.opts.RenewInterval)
	defer next.Stop()
	expiry := time.NewTimer(boottime.Until(b.currentValidUntil()))
	defer expiry.Stop()
	failing := false
	for {
		select {
		case <-b.live.Done():
			if inflight {
				<-results // the attempt's context is cancelled too
			}
			return
		case <-expiry.C:
			if d := b.expire(); d > 0 {
				expiry.Reset(d)
			}
		case <-next.C:
			inflight = true
			go func() { results <- b.renew() }()
		case r := <-results:
			inflight = false
			switch {
			case r.err == nil:
				if failing {
					b.log.Info("etcd lease renewed again")
					failing = false
				}
				expiry.Reset(boottime.Until(b.currentValidUntil()))
				next.Reset(boottime.Until(r.sent.Add(b.opts.RenewInterval)))
			case errors.Is(r.err, rpctypes.ErrLeaseNotFound):
				b.loseSession("etcd no longer knows the lease")
				return
			default:
				if b.live.Err() != nil {
					return
				}
				if !failing {
					b.log.Warn("etcd lease renewal failed", "error", b.translate(b.live, "renew lease", r.err),
						"valid_for", boottime.Until(b.currentValidUntil()).Round(time.Millisecond))
				}
				failing = true
				next.Reset(b.retryDelay())
			}
		}
	}
}

// retryDelay is the pause between failed renewal attempts: short, so that
// the session recovers quickly once etcd answers again.
func (b *Backend) retryDelay() time.Duration {
	return min(b.opts.RenewInterval/4, 250*time.Millisecond)
}

// renewTimeout bounds one renewal attempt: long enough for a slow but
// healthy etcd (a late success still counts from its send time), short
// enough to leave time for retries within the TTL.
func (b *Backend) renewTimeout() time.Duration {
	return min(max(2*b.opts.RenewInterval, 500*time.Millisecond), b.ttl/2)
}

// renew sends one lease renewal and, while this backend leads or is about
// to, rewrites the heartbeat key after it; then it moves validUntil to the
// renewal's send time plus the TTL and releases pending leader keys.
func (b *Backend) renew() renewal {
	ctx, cancel := context.WithTimeout(b.live, b.renewTimeout())
	defer cancel()
	sent := boottime.Now()
	if _, err := b.cli.KeepAliveOnce(ctx, b.lease); err != nil {
		return renewal{sent: sent, err: err}
	}
	// Sent after the renewal, so that a follower that sees this heartbeat
	// knows the renewal was sent before (see doc.go).
	if b.leading.Load() > 0 {
		b.mu.Lock()
		n := b.renewals + 1
		b.mu.Unlock()
		hb := mustJSON(heartbeatValue{Node: b.opts.Node, Renewals: n})
		if _, err := b.cli.Put(ctx, b.keys.heartbeat(int64(b.lease)), hb, clientv3.WithLease(b.lease)); err != nil {
			return renewal{sent: sent, err: err}
		}
	}
	b.renewed(sent)
	b.flushPending(ctx)
	return renewal{sent: sent}
}

// renewed records a successful renewal sent at sent.
func (b *Backend) renewed(sent time.Time) {
	vu := sent.Add(b.ttl)
	b.mu.Lock()
	b.renewals++
	if sent.After(b.renewedAt) {
		b.renewedAt = sent
	}
	if !vu.After(b.validUntil) {
		b.mu.Unlock()
		return
	}
	b.validUntil = vu
	close(b.renewedCh)
	b.renewedCh = make(chan struct{})
	var held []*leadership
	for _, qs := range b.queues {
		if qs.active != nil {
			held = append(held, qs.active)
		}
	}
	b.mu.Unlock()
	for _, l := range held {
		l.notifyRenewed()
	}
}

// SessionConfirmed reports whether etcd confirmed the session's lease
// recently: the last successful renewal was sent less than the timing's
// ConfirmWindow (two renew intervals) ago. It is false once the session
// is lost or the backend closed, and on a read-only backend. It
// implements election.SessionConfirmer.
func (b *Backend) SessionConfirmed() bool {
	if b.opts.ReadOnly || b.live.Err() != nil {
		return false
	}
	b.mu.Lock()
	at := b.renewedAt
	b.mu.Unlock()
	return boottime.Since(at) < b.opts.Timing.ConfirmWindow()
}

// currentValidUntil returns the session's validUntil.
func (b *Backend) currentValidUntil() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.validUntil
}

// expire marks every leadership lost if validUntil has passed, and
// remembers their keys for release once etcd answers again. Otherwise it
// returns how long until validUntil.
func (b *Backend) expire() time.Duration {
	b.mu.Lock()
	if d := boottime.Until(b.validUntil); d > 0 {
		b.mu.Unlock()
		return d
	}
	var held []*leadership
	for q, qs := range b.queues {
		if qs.active != nil {
			held = append(held, qs.active)
			b.pending[q] = qs.active.term
			qs.expiredTerm = qs.active.term
			qs.active = nil
		}
	}
	b.mu.Unlock()
	if len(held) > 0 {
		b.log.Warn("etcd lease not renewed in time; giving up every leadership", "leaderships", len(held))
	}
	for _, l := range held {
		l.markLost("lease not renewed in time")
	}
	return 0
}

// waitValid blocks until the session's validUntil is in the future, or ctx
// is done.
func (b *Backend) waitValid(ctx context.Context) error {
	for {
		b.mu.Lock()
		ok := boottime.Now().Before(b.validUntil)
		ch := b.renewedCh
		b.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// leaseHex formats a lease ID for logs.
func leaseHex(id int64) string { return fmt.Sprintf("%x", id) }
