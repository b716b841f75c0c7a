package etcdbackend

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/regentd/regent/election"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regentd/regent/internal/boottime"
)

// errWatchGap means a follower's watch broke off: events may be missing.
var errWatchGap = errors.New("etcdbackend: watch broke off")

// Campaign blocks until this replica leads queue, publishes payload in the
// leader record and returns the leadership. While another replica leads,
// it waits on a watch (no polling) and tries again the moment the leader
// key is deleted. After an unclean end of the previous leadership (lease
// expired or revoked, key deleted by hand) it first waits until the old
// leader can no longer trust it (see doc.go); while a step-down request
// names another node it holds back for StepDownHold.
//
// It returns ctx.Err() when ctx is cancelled, an error wrapping
// election.ErrSessionLost when the session ends, election.ErrClosed after
// Close, election.ErrReadOnly on a read-only backend and election.ErrBusy
// when this backend already campaigns for queue, or leads it (until the
// leadership's Done is closed). Failed requests are retried every
// RetryInterval.
func (b *Backend) Campaign(ctx context.Context, queue string, payload []byte) (election.Leadership, error) {
	if b.opts.ReadOnly {
		return nil, fmt.Errorf("%w: campaign for %s", election.ErrReadOnly, queue)
	}
	if err := validName("queue", queue); err != nil {
		return nil, err
	}
	octx, end, err := b.op(ctx, true)
	if err != nil {
		return nil, err
	}
	defer end()
	if err := b.beginCampaign(queue); err != nil {
		return nil, err
	}
	c := &campaign{b: b, queue: queue, payload: payload, log: b.log.With("queue", queue)}
	l, err := c.run(octx)
	b.endCampaign(queue)
	if c.ambiguous && l == nil {
		// The last creation attempt may have committed: have the key
		// released once etcd answers.
		b.addPending(queue, 0)
	}
	if err != nil {
		switch {
		case b.sessionLost():
			return nil, fmt.Errorf("%w: campaign for %s", election.ErrSessionLost, queue)
		case b.ctx.Err() != nil:
			return nil, fmt.Errorf("%w: campaign for %s", election.ErrClosed, queue)
		case ctx.Err() != nil:
			return nil, ctx.Err()
		}
		return nil, err
	}
	return l, nil
}

// beginCampaign marks queue as campaigned for.
func (b *Backend) beginCampaign(queue string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return election.ErrClosed
	}
	qs := b.queues[queue]
	if qs == nil {
		qs = &queueState{}
		b.queues[queue] = qs
	}
	if qs.campaigning || qs.active != nil {
		return fmt.Errorf("%w: %s", election.ErrBusy, queue)
	}
	qs.campaigning = true
	return nil
}

// endCampaign clears the mark of beginCampaign.
func (b *Backend) endCampaign(queue string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if qs := b.queues[queue]; qs != nil {
		qs.campaigning = false
	}
}

// campaign is one Campaign call.
type campaign struct {
	b       *Backend
	queue   string
	payload []byte
	log     hclog.Logger
	// ambiguous is set while the outcome of the last creation attempt is
	// unknown (the request failed).
	ambiguous bool
	failing   bool
	// end is how the previous term ended uncleanly, for its history.
	end termEnd
	// noHistory is set once etcd refused a creation that wrote history:
	// later attempts go without it (see history.go).
	noHistory bool
}

// observed is a leadership of another replica that the campaign watched.
type observed struct {
	term  int64
	lease int64
	// since: no renewal of lease that the leader may count for term was
	// sent after since, unless the campaign has seen a heartbeat or
	// creation event after it (which moves since).
	since time.Time
	// beat is when the last heartbeat of lease was seen, gone when the
	// leader key was seen deleted (zero: not seen); see endOf.
	beat, gone time.Time
	// beatRev: every heartbeat of lease up to this revision is accounted
	// for in since (the snapshot's revision, or the last heartbeat seen).
	beatRev int64
}

// snapshot is the state of a queue's keys at one revision.
type snapshot struct {
	rev         int64
	leader      *mvccpb.KeyValue
	termRev     int64  // ModRevision of the term key: the latest term
	termRaw     []byte // value of the term key
	released    int64  // term released cleanly last
	releasedRaw []byte // value of the released key
	stepDown    *mvccpb.KeyValue
	history     []string // history keys of the queue, in key order
}

// run is the campaign loop.
func (c *campaign) run(ctx context.Context) (*leadership, error) {
	var seen *observed
	var waitedOut int64 // term whose unclean end has been waited out
	for {
		if err := c.b.waitValid(ctx); err != nil {
			return nil, err
		}
		st, err := c.read(ctx)
		if err != nil {
			if err := c.pause(ctx, "read queue state", err); err != nil {
				return nil, err
			}
			continue
		}
		c.failing = false
		var l *leadership
		switch {
		case st.leader != nil:
			var o *observed
			if o, err = c.followLeader(ctx, st); o != nil {
				seen = o
			}
		case st.termRev > 0 && st.released != st.termRev && waitedOut != st.termRev:
			if err = c.waitOutUnclean(ctx, seen, st); err == nil {
				waitedOut = st.termRev
			}
		default:
			l, err = c.tryCreate(ctx, st)
		}
		if err != nil || l != nil {
			return l, err
		}
	}
}

// followLeader waits while st shows a leader key: this backend's own, left
// unused, is released; another's is watched until it goes. It returns
// what it observed of the leader (nil for its own key), and an error only
// when the campaign must end.
func (c *campaign) followLeader(ctx context.Context, st snapshot) (*observed, error) {
	b := c.b
	if st.leader.Lease == int64(b.lease) {
		// This backend's own key with no leadership using it: left
		// by a creation attempt whose outcome was unknown, or by a
		// leadership given up while etcd was unreachable. Nobody
		// acts on it, so it is released cleanly.
		if err := c.releaseStale(ctx, st.leader.CreateRevision); err != nil {
			return nil, c.pause(ctx, "release stale leader key", err)
		}
		return nil, nil
	}
	seen := &observed{term: st.leader.CreateRevision, lease: st.leader.Lease, since: time.Now(), beatRev: st.rev}
	if by, ok := c.b.leaseRenewalBound(ctx, seen.lease, seen.since); ok && by.Before(seen.since) {
		// A campaign that starts (or restarts) while the leader is
		// already gone would otherwise wait a whole lease from now
		// after the key's expiry, not from the leader's last
		// renewal.
		seen.since = by
	}
	c.log.Debug("waiting for the leader to go", "term", seen.term, "lease", leaseHex(seen.lease))
	if err := c.wait(ctx, seen, st.rev); err != nil {
		if !errors.Is(err, errWatchGap) {
			return seen, err
		}
		// Heartbeats may have been missed: trust nothing older.
		seen.since = time.Now()
		return seen, c.pause(ctx, "watch leader", err)
	}
	return seen, nil
}

// waitOutUnclean holds back after a leadership that ended without a
// release until its leader surely stopped trusting it.
func (c *campaign) waitOutUnclean(ctx context.Context, seen *observed, st snapshot) error {
	c.end = c.endOf(seen, st)
	until := c.holdUntil(seen, st)
	if d := time.Until(until); d > 0 {
		c.log.Info("previous leadership ended uncleanly; holding back until its leader surely stopped trusting it",
			"term", st.termRev, "hold", d.Round(time.Millisecond))
		if !sleepCtx(ctx, d) {
			return ctx.Err()
		}
	}
	return nil
}

// tryCreate waits out a step-down request to another node, else tries to
// create the leader key. It returns the leadership won, or neither a
// leadership nor an error to look again.
func (c *campaign) tryCreate(ctx context.Context, st snapshot) (*leadership, error) {
	until, err := c.stepDownHold(ctx, st)
	if err != nil {
		return nil, c.pause(ctx, "read step-down request", err)
	}
	if d := time.Until(until); d > 0 {
		c.log.Debug("holding back for a step-down to another node", "hold", d.Round(time.Millisecond))
		// In slices of RetryInterval: a newer request may name this
		// replica (a drain handing its queues over in batches) and end
		// the hold before it runs out.
		if !sleepCtx(ctx, min(d, c.b.opts.RetryInterval)) {
			return nil, ctx.Err()
		}
		return nil, nil
	}
	l, err := c.create(ctx, st)
	if err != nil {
		if errors.Is(err, election.ErrClosed) || errors.Is(err, election.ErrSessionLost) {
			return nil, err
		}
		return nil, c.pause(ctx, "create leader key", err)
	}
	return l, nil
}

// campaignConcurrency bounds the campaign requests (reads, creations,
// step-down lease lookups) one backend has in flight. A replica starting
// with thousands of queues, or taking over a dead replica's, would
// otherwise send them all at once: etcd then queues thousands of
// transactions, the session's keepalives wait behind them (etcd answers a
// lease renewal only once its applies caught up), leaderships run past
// their deadlines and the campaigns start again (seen at 5,000 queues).
const campaignConcurrency = 64

// slot waits for a campaign request slot; the returned func frees it.
func (b *Backend) slot(ctx context.Context) (func(), error) {
	select {
	case b.campaignSlots <- struct{}{}:
		return func() { <-b.campaignSlots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// campaignRequest waits for a campaign request slot and returns the
// context of one request (DialTimeout); end frees the slot and cancels
// the context.
func (b *Backend) campaignRequest(ctx context.Context) (rctx context.Context, end func(), err error) {
	free, err := b.slot(ctx)
	if err != nil {
		return nil, nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, b.cfg.DialTimeout)
	return rctx, func() { cancel(); free() }, nil
}

// read reads the queue's keys in one transaction.
func (c *campaign) read(ctx context.Context) (snapshot, error) {
	b := c.b
	rctx, end, err := b.campaignRequest(ctx)
	if err != nil {
		return snapshot{}, err
	}
	defer end()
	resp, err := b.cli.Txn(rctx).Then(
		clientv3.OpGet(b.keys.leader(c.queue)),
		clientv3.OpGet(b.keys.term(c.queue)),
		clientv3.OpGet(b.keys.released(c.queue)),
		clientv3.OpGet(b.keys.stepDown(c.queue)),
		clientv3.OpGet(b.keys.history(c.queue), clientv3.WithPrefix(), clientv3.WithKeysOnly(),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)),
	).Commit()
	if err != nil {
		return snapshot{}, err
	}
	first := func(i int) *mvccpb.KeyValue {
		if i >= len(resp.Responses) {
			return nil
		}
		kvs := resp.Responses[i].GetResponseRange().GetKvs()
		if len(kvs) == 0 {
			return nil
		}
		return kvs[0]
	}
	st := snapshot{rev: resp.Header.Revision, leader: first(0), stepDown: first(3)}
	if kv := first(1); kv != nil {
		st.termRev, st.termRaw = kv.ModRevision, kv.Value
	}
	if kv := first(2); kv != nil {
		st.released, st.releasedRaw = decodeReleased(kv.Value), kv.Value
	}
	if len(resp.Responses) > 4 {
		for _, kv := range resp.Responses[4].GetResponseRange().GetKvs() {
			st.history = append(st.history, string(kv.Key))
		}
	}
	return st, nil
}

// wait watches, from rev, the queue's leader key and the heartbeat key of
// the observed leader's lease until the observed leadership ends (its
// leader key deleted or replaced). Heartbeats of its lease move
// seen.since; so does, once the key is deleted, a heartbeat written before
// the deletion that the heartbeat watch had not delivered yet (see
// beatsBefore). It returns errWatchGap if a watch breaks off.
//
// Two narrow watches, not one on the cluster's prefix: a replica stands by
// for hundreds of queues, and a prefix watch per queue would deliver every
// write of the cluster (member records list every queue) hundreds of times.
func (c *campaign) wait(ctx context.Context, seen *observed, rev int64) error {
	b := c.b
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	lk, hb := b.keys.leader(c.queue), b.keys.heartbeat(seen.lease)
	lch := b.cli.Watch(wctx, lk, clientv3.WithRev(rev+1))
	hch := b.cli.Watch(wctx, hb, clientv3.WithRev(rev+1))
	if b.beatWatch != nil {
		hch = b.beatWatch(wctx, hch)
	}
	for {
		var resp clientv3.WatchResponse
		var ok bool
		select {
		case <-ctx.Done():
			return ctx.Err()
		case resp, ok = <-lch:
		case resp, ok = <-hch:
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !ok {
			return errWatchGap
		}
		if err := resp.Err(); err != nil {
			return fmt.Errorf("%w: %w", errWatchGap, err)
		}
		now := time.Now()
		for _, ev := range resp.Events {
			switch string(ev.Kv.Key) {
			case hb:
				if ev.Type == mvccpb.PUT {
					seen.since, seen.beat = now, now
					seen.beatRev = max(seen.beatRev, ev.Kv.ModRevision)
				}
			case lk:
				if ev.Type == mvccpb.DELETE {
					seen.gone = now
					return c.beatsBefore(ctx, seen, ev.Kv.ModRevision)
				}
				if ev.Kv.CreateRevision != seen.term {
					return nil
				}
			}
		}
	}
}

// beatsBefore accounts in seen for every heartbeat of the observed
// leader's lease written before rev, the revision at which its leader key
// was deleted (seen at seen.gone). The heartbeat watch delivers apart from
// the leader key's, so the last of those heartbeats may not have arrived:
// the heartbeat key is read as of rev-1. If it was written after the last
// heartbeat seen, it was written before the deletion was, and so before
// seen.gone: seen.gone becomes the bound on the leader's last renewal.
// If the read fails (compacted, etcd unreachable), the same: nothing later
// than seen.gone can count. It returns an error only when ctx is done.
func (c *campaign) beatsBefore(ctx context.Context, seen *observed, rev int64) error {
	if rev-1 <= seen.beatRev {
		return nil
	}
	mod, err := c.b.heartbeatAt(ctx, seen.lease, rev-1)
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		c.log.Debug("cannot read the leader's last heartbeat before its key was deleted; holding back from the deletion",
			"lease", leaseHex(seen.lease), "revision", rev-1, "error", err)
		seen.since = seen.gone
	case mod > seen.beatRev:
		seen.since, seen.beat, seen.beatRev = seen.gone, seen.gone, mod
	}
	return nil
}

// holdUntil returns when the leader of the last term, which ended without
// a clean release, can no longer trust it: its last renewal was sent
// before seen.since (or before now, if this campaign never watched it),
// and its trust lasts the TTL recorded in the term key.
func (c *campaign) holdUntil(seen *observed, st snapshot) time.Time {
	b := c.b
	ttl := b.ttl
	tv, ok := decodeTerm(st.termRaw)
	if ok {
		ttl = time.Duration(tv.TTLMillis) * time.Millisecond
	}
	if ok && tv.Lease == int64(b.lease) {
		// One of this backend's own leaderships: it was trusted until
		// its ValidUntil froze when it was lost.
		b.mu.Lock()
		defer b.mu.Unlock()
		if qs := b.queues[c.queue]; qs != nil && qs.heldTerm == st.termRev && !qs.heldUntil.IsZero() {
			return qs.heldUntil
		}
		return b.validUntil
	}
	if seen != nil && seen.term == st.termRev {
		return seen.since.Add(ttl)
	}
	return time.Now().Add(ttl)
}

// stepDownHold returns until when a pending step-down request asks this
// replica to hold back its candidacy (a zero time if it does not).
func (c *campaign) stepDownHold(ctx context.Context, st snapshot) (time.Time, error) {
	b := c.b
	if st.stepDown == nil || st.stepDown.Lease == 0 {
		return time.Time{}, nil
	}
	req, err := decodeStepDown(c.queue, string(st.stepDown.Key), st.stepDown.Value)
	if err != nil {
		c.log.Warn("ignoring an undecodable step-down request", "error", err)
		return time.Time{}, nil
	}
	switch {
	case req.To == b.opts.Node:
		return time.Time{}, nil
	case req.To == "":
		// Only the replica asked to step down holds back.
		b.mu.Lock()
		qs := b.queues[c.queue]
		asked := qs != nil && qs.heldTerm == req.Term
		b.mu.Unlock()
		if !asked {
			return time.Time{}, nil
		}
	}
	rctx, end, err := b.campaignRequest(ctx)
	if err != nil {
		return time.Time{}, err
	}
	defer end()
	ttl, err := b.cli.TimeToLive(rctx, clientv3.LeaseID(st.stepDown.Lease))
	if err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return time.Time{}, nil
		}
		return time.Time{}, err
	}
	if ttl.TTL <= 0 {
		return time.Time{}, nil
	}
	// TTL is whole seconds rounded down, so age is rounded up.
	age := time.Duration(ttl.GrantedTTL-ttl.TTL) * time.Second
	if age >= b.opts.StepDownHold {
		return time.Time{}, nil
	}
	return time.Now().Add(b.opts.StepDownHold - age), nil
}

// create tries to create the leader key. It returns a nil leadership when
// another replica got there first, or the leader state changed since st.
func (c *campaign) create(ctx context.Context, st snapshot) (*leadership, error) {
	b := c.b
	b.leading.Add(1)
	won := false
	defer func() {
		if !won {
			b.leading.Add(-1)
		}
	}()
	electedAt := time.Now().UTC().Round(0)
	resp, err := c.createTxn(ctx, st, electedAt)
	if err != nil || !resp.Succeeded {
		return nil, err
	}
	l, err := c.install(resp.Header.Revision, electedAt)
	won = l != nil
	return l, err
}

// createTxn writes the leader key (on the session's lease), the term key
// and the history in one transaction, if the queue has no leader and its
// term is still st's.
func (c *campaign) createTxn(ctx context.Context, st snapshot, electedAt time.Time) (*clientv3.TxnResponse, error) {
	b := c.b
	lk, tk := b.keys.leader(c.queue), b.keys.term(c.queue)
	rec := mustJSON(leaderValue{
		Cluster: b.opts.Cluster, Queue: c.queue, Node: b.opts.Node, Host: b.opts.Host, PID: b.opts.PID,
		ElectedAt: electedAt, Payload: c.payload,
	})
	tv := mustJSON(termValue{Node: b.opts.Node, Lease: int64(b.lease), TTLMillis: b.ttl.Milliseconds(),
		Host: b.opts.Host, ElectedAt: electedAt})
	hcmps, hops := c.historyOps(st)
	free, err := b.slot(ctx)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, b.cfg.DialTimeout)
	defer cancel()
	resp, err := b.cli.Txn(rctx).
		If(append([]clientv3.Cmp{
			clientv3.Compare(clientv3.CreateRevision(lk), "=", 0),
			clientv3.Compare(clientv3.ModRevision(tk), "=", st.termRev),
		}, hcmps...)...).
		Then(append([]clientv3.Op{
			clientv3.OpPut(lk, rec, clientv3.WithLease(b.lease)),
			clientv3.OpPut(tk, tv),
			clientv3.OpDelete(b.keys.stepDown(c.queue)),
		}, hops...)...).
		Commit()
	free()
	if err != nil {
		c.ambiguous = true
		if len(hops) > 0 && historyRefused(rctx, err) {
			c.noHistory = true
			c.log.Warn("etcd refused the queue's history with the new leadership; campaigning without it",
				"error", b.translate(rctx, "create leader key", err))
		}
		return nil, err
	}
	c.ambiguous = false
	return resp, nil
}

// install makes the key created at term the queue's leadership, unless
// the backend closed, lost its session or is not trusted right now: then
// the key is given back, and it returns an error, or nothing to campaign
// on.
func (c *campaign) install(term int64, electedAt time.Time) (*leadership, error) {
	b := c.b
	wctx, stop := context.WithCancel(b.ctx)
	l := &leadership{
		b: b, queue: c.queue, key: b.keys.leader(c.queue), term: term, electedAt: electedAt,
		done: make(chan struct{}), renewed: make(chan struct{}, 1), stopWatch: stop,
	}
	b.mu.Lock()
	switch {
	case b.closed || b.sessionLost():
		b.mu.Unlock()
		stop()
		c.releaseAfter(term)
		if b.sessionLost() {
			return nil, election.ErrSessionLost
		}
		return nil, election.ErrClosed
	case !boottime.Now().Before(b.validUntil):
		// The session is not trusted right now: give the key back and
		// wait for a renewal.
		b.mu.Unlock()
		stop()
		c.releaseAfter(term)
		return nil, nil
	}
	qs := b.queues[c.queue]
	qs.active = l
	qs.heldTerm = term
	qs.heldUntil = time.Time{}
	b.wg.Add(1)
	b.mu.Unlock()
	go l.watch(wctx, term+1)
	c.log.Info("elected leader", "term", term)
	return l, nil
}

// releaseStale releases this backend's own leader key of term.
func (c *campaign) releaseStale(ctx context.Context, term int64) error {
	rctx, cancel := context.WithTimeout(ctx, c.b.cfg.DialTimeout)
	defer cancel()
	ok, err := c.b.release(rctx, c.queue, term)
	if err == nil && ok {
		c.log.Info("stale leader key released", "term", term)
	}
	return err
}

// releaseAfter releases a just-created leader key that will not be used,
// with a fresh context since the campaign's may be done; if that fails the
// key is released later.
func (c *campaign) releaseAfter(term int64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.b.ctx), c.b.cfg.DialTimeout)
	defer cancel()
	if _, err := c.b.release(ctx, c.queue, term); err != nil {
		c.b.addPending(c.queue, term)
	}
}

// pause logs a failed request and waits RetryInterval before the next try.
// It returns an error when the campaign must end instead: ctx done, or the
// lease gone.
func (c *campaign) pause(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		c.b.loseSession("etcd no longer knows the lease")
		return election.ErrSessionLost
	}
	if !c.failing && !errors.Is(err, errWatchGap) {
		c.log.Warn("campaign request failed; retrying", "request", what, "error", c.b.translate(ctx, what, err))
	}
	d := c.b.opts.RetryInterval
	if errors.Is(err, errWatchGap) {
		d = min(d, 100*time.Millisecond)
	} else {
		c.failing = true
	}
	if !sleepCtx(ctx, d) {
		return ctx.Err()
	}
	return nil
}
