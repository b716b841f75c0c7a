package etcdbackend

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/regentd/regent/election"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// History layout (see doc.go): the latest term of a queue is described by
// its term key (node, host, elected_at) and, once it ended cleanly, by
// its released key (reason, time). Every earlier term has a key
// history/<queue>/<term, 20 digits>, without a lease, written by the
// transaction that creates the next leadership, or earlier by the loser
// itself when its term was ended from outside (noteLost). That same
// transaction trims the oldest keys, so that with the latest term
// election.HistoryKeep terms are kept. Nothing is written per renewal.

// historyDigits is the width of the zero-padded term in a history key, so
// that keys sort like terms (an int64 has at most 19 digits).
const historyDigits = 20

// history is the prefix of the history keys of queue. It lies outside
// queues/ so that reading every leader record does not read the history.
func (k keyspace) history(q string) string { return k.root() + "history/" + q + "/" }

// historyKey is the history key of one ended term of queue.
func (k keyspace) historyKey(q string, term int64) string {
	return fmt.Sprintf("%s%0*d", k.history(q), historyDigits, term)
}

// termOfHistory returns the term named by a history key of queue, or false
// if key is not one.
func (k keyspace) termOfHistory(q, key string) (int64, bool) {
	s, ok := strings.CutPrefix(key, k.history(q))
	if !ok || len(s) != historyDigits || strings.Trim(s, "0123456789") != "" {
		// Digits only: ParseInt also takes a sign.
		return 0, false
	}
	term, err := strconv.ParseInt(s, 10, 64)
	if err != nil || term <= 0 {
		return 0, false
	}
	return term, true
}

// historyValue is the stored value of a history key: election.HistoryEntry
// without Queue and Term, which the key names.
type historyValue struct {
	Node      string    `json:"node"`
	Host      string    `json:"host,omitempty"`
	From      time.Time `json:"from,omitzero"`
	To        time.Time `json:"to,omitzero"`
	EndReason string    `json:"end_reason"`
}

// decodeHistory decodes the value of the history key of term.
func decodeHistory(queue, key string, term int64, raw []byte) (election.HistoryEntry, error) {
	var v historyValue
	if err := json.Unmarshal(raw, &v); err != nil {
		return election.HistoryEntry{}, corrupt(key, raw, err)
	}
	if err := validName("history node", v.Node); err != nil {
		return election.HistoryEntry{}, corrupt(key, raw, err)
	}
	switch v.EndReason {
	case election.EndResign, election.EndReleased, election.EndExpiry, election.EndLost:
	default:
		return election.HistoryEntry{}, corrupt(key, raw, fmt.Errorf("unknown end reason %q", v.EndReason))
	}
	return election.HistoryEntry{Queue: queue, Term: term, Node: v.Node, Host: v.Host,
		From: v.From, To: v.To, EndReason: v.EndReason}, nil
}

// termEnd is how a campaign judged that the previous term ended uncleanly.
type termEnd struct {
	term   int64
	at     time.Time
	reason string
}

// lostMargin is how much earlier than the lease could expire a leader key
// must vanish for a follower to judge that it was ended from outside.
func lostMargin(ttl time.Duration) time.Duration {
	return min(ttl/4, time.Second)
}

// endOf judges how the previous term, which ended without a clean release,
// ended. When the campaign watched it, saw a heartbeat of its lease and
// then saw its key deleted well before the lease could have run out
// (heartbeat + TTL - lostMargin), it was ended from outside
// (election.EndLost: lease revoked, key deleted). Otherwise the most
// likely end is that the lease ran out (election.EndExpiry: the leader
// died, froze or was cut off); a leader that is alive records EndLost
// itself when that is what happened (see noteLost), which takes
// precedence. The end time is when the key was seen deleted, or else when
// the campaign found it gone.
func (c *campaign) endOf(seen *observed, st snapshot) termEnd {
	end := termEnd{term: st.termRev, at: time.Now(), reason: election.EndExpiry}
	if seen == nil || seen.term != st.termRev {
		return end
	}
	if !seen.gone.IsZero() {
		end.at = seen.gone
	}
	ttl := c.b.ttl
	if tv, ok := decodeTerm(st.termRaw); ok {
		ttl = time.Duration(tv.TTLMillis) * time.Millisecond
	}
	if !seen.beat.IsZero() && !seen.gone.IsZero() && seen.gone.Before(seen.beat.Add(ttl-lostMargin(ttl))) {
		end.reason = election.EndLost
	}
	return end
}

// historyOps returns the comparisons and operations that the transaction
// creating a new leadership adds to record the previous term (unless its
// history key exists already) and trim the oldest history keys. They are
// empty once history writes were refused (noHistory).
func (c *campaign) historyOps(st snapshot) ([]clientv3.Cmp, []clientv3.Op) {
	if c.noHistory {
		return nil, nil
	}
	k := c.b.keys
	var keys []string
	for _, key := range st.history {
		if _, ok := k.termOfHistory(c.queue, key); ok {
			keys = append(keys, key)
		}
	}
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	if st.termRev > 0 {
		pk := k.historyKey(c.queue, st.termRev)
		if v, ok := c.previousEntry(st); ok && !slices.Contains(keys, pk) {
			// The loser may record its own end meanwhile: it wins.
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(pk), "=", 0))
			ops = append(ops, clientv3.OpPut(pk, v))
			keys = append(keys, pk)
		}
	}
	slices.Sort(keys)
	// Keep HistoryKeep-1 ended terms: with the new one, HistoryKeep terms.
	if extra := len(keys) - (election.HistoryKeep - 1); extra > 0 {
		ops = append(ops, clientv3.OpDelete(k.history(c.queue), clientv3.WithRange(keys[extra])))
	}
	return cmps, ops
}

// previousEntry encodes the history value of the term in st's term key,
// which ended: cleanly (the released key names it) or as judged by endOf.
func (c *campaign) previousEntry(st snapshot) (string, bool) {
	tv, ok := decodeTerm(st.termRaw)
	if !ok || validName("node", tv.Node) != nil {
		// History would not read back an entry without a valid node.
		return "", false
	}
	v := historyValue{Node: tv.Node, Host: tv.Host, From: tv.ElectedAt}
	switch rv := decodeReleasedValue(st.releasedRaw); {
	case rv.Term == st.termRev:
		v.EndReason, v.To = releasedReason(rv), rv.At
	case c.end.term == st.termRev && c.end.reason != "":
		v.EndReason, v.To = c.end.reason, c.end.at
	default:
		v.EndReason, v.To = election.EndExpiry, time.Now()
	}
	if v.To.IsZero() {
		v.To = time.Now()
	}
	v.To = v.To.UTC().Round(0)
	return mustJSON(v), true
}

// releasedReason is the end reason a released key records; a clean
// resign when it records none it knows (written by an older regent).
func releasedReason(rv releasedValue) string {
	switch rv.Reason {
	case election.EndReleased, election.EndExpiry:
		return rv.Reason
	}
	return election.EndResign
}

// historyRefused reports whether a failed creation request that carried
// history operations may have failed because of them (etcd refused it
// rather than could not be reached), so that the next attempts go without.
func historyRefused(ctx context.Context, err error) bool {
	return ctx.Err() == nil && !unreachable(err) && !errors.Is(err, rpctypes.ErrLeaseNotFound)
}

// noteLost records in the history that l's term was ended from outside
// (its leader key deleted, or its lease revoked) while this replica still
// trusted it: election.EndLost, ended now. It writes only if the queue's
// latest term is still l's, was not released cleanly, and nobody recorded
// its end yet; a failure is logged. Called after l is marked lost, so it
// never delays the loss being signalled; Close cancels it.
func (b *Backend) noteLost(l *leadership) {
	l.mu.Lock()
	resigned, vu := l.resigned, l.frozen
	l.mu.Unlock()
	now := time.Now()
	if resigned || vu.IsZero() || !now.Before(vu) {
		return
	}
	hk := b.keys.historyKey(l.queue, l.term)
	v := mustJSON(historyValue{Node: b.opts.Node, Host: b.opts.Host, From: l.electedAt,
		To: now.UTC().Round(0), EndReason: election.EndLost})
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.DialTimeout)
	defer cancel()
	resp, err := b.cli.Txn(ctx).
		If(
			clientv3.Compare(clientv3.ModRevision(b.keys.term(l.queue)), "=", l.term),
			clientv3.Compare(clientv3.ModRevision(b.keys.released(l.queue)), "<", l.term),
			clientv3.Compare(clientv3.CreateRevision(hk), "=", 0),
		).
		Then(clientv3.OpPut(hk, v)).
		Commit()
	switch {
	case err != nil:
		if b.ctx.Err() == nil {
			b.log.Warn("cannot record the lost leadership in the history", "queue", l.queue, "term", l.term,
				"error", b.translate(ctx, "record history of "+l.queue, err))
		}
	case resp.Succeeded:
		b.log.Debug("lost leadership recorded in the history", "queue", l.queue, "term", l.term)
	}
}

// History returns the last terms of queue, newest first, at most limit of
// them (all that are kept when limit <= 0; HistoryKeep at least). The
// latest term comes from the term key: it lasts while its leader key
// exists; once released cleanly it carries the release's reason and time;
// if it ended otherwise and no one recorded how yet (the next leader
// does), it is reported as election.EndExpiry with an unknown end time.
// Undecodable entries are skipped and logged. Works on a read-only
// backend; ctx bounds the request (DialTimeout when it has no deadline).
func (b *Backend) History(ctx context.Context, queue string, limit int) ([]election.HistoryEntry, error) {
	if err := validName("queue", queue); err != nil {
		return nil, err
	}
	octx, end, err := b.op(ctx, false)
	if err != nil {
		return nil, err
	}
	defer end()
	rctx, cancel := b.request(octx)
	defer cancel()
	// Every kept key is read (the history is trimmed), so that skipped
	// entries do not count against limit.
	hopts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend)}
	resp, err := b.cli.Txn(rctx).Then(
		clientv3.OpGet(b.keys.term(queue)),
		clientv3.OpGet(b.keys.released(queue)),
		clientv3.OpGet(b.keys.leader(queue)),
		clientv3.OpGet(b.keys.history(queue), hopts...),
	).Commit()
	if err != nil {
		return nil, b.opErr(rctx, "read history of "+queue, err)
	}
	kvs := func(i int) []*mvccpb.KeyValue {
		if i >= len(resp.Responses) {
			return nil
		}
		return resp.Responses[i].GetResponseRange().GetKvs()
	}
	var out []election.HistoryEntry
	seen := map[int64]bool{}
	for _, kv := range kvs(3) {
		key := string(kv.Key)
		term, ok := b.keys.termOfHistory(queue, key)
		if !ok {
			continue
		}
		e, err := decodeHistory(queue, key, term, kv.Value)
		if err != nil {
			b.log.Warn("skipping an undecodable history entry", "queue", queue, "error", err)
			continue
		}
		out = append(out, e)
		seen[term] = true
	}
	if latest, ok := b.latestTerm(queue, kvs(0), kvs(1), kvs(2)); ok && !seen[latest.Term] {
		out = append([]election.HistoryEntry{latest}, out...)
	}
	slices.SortFunc(out, func(x, y election.HistoryEntry) int { return cmp.Compare(y.Term, x.Term) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// latestTerm builds the history entry of the term in the term key, from
// the term, released and leader keys read together; ok is false when the
// queue was never led or the term key cannot be decoded (logged).
func (b *Backend) latestTerm(queue string, termKV, releasedKV, leaderKV []*mvccpb.KeyValue) (election.HistoryEntry, bool) {
	if len(termKV) == 0 {
		return election.HistoryEntry{}, false
	}
	kv := termKV[0]
	tv, ok := decodeTerm(kv.Value)
	if !ok || tv.Node == "" {
		b.log.Warn("skipping an undecodable term key in the history", "queue", queue,
			"error", corrupt(string(kv.Key), kv.Value, errors.New("not a term record")))
		return election.HistoryEntry{}, false
	}
	e := election.HistoryEntry{Queue: queue, Term: kv.ModRevision, Node: tv.Node, Host: tv.Host, From: tv.ElectedAt}
	if len(leaderKV) > 0 && leaderKV[0].CreateRevision == e.Term {
		if e.From.IsZero() {
			// A term key written before it carried the election time.
			e.From = decodeLeader(b.opts.Cluster, queue, string(leaderKV[0].Key), e.Term, leaderKV[0].Value).ElectedAt
		}
		return e, true
	}
	var rv releasedValue
	if len(releasedKV) > 0 {
		rv = decodeReleasedValue(releasedKV[0].Value)
	}
	if rv.Term == e.Term {
		e.EndReason, e.To = releasedReason(rv), rv.At
		return e, true
	}
	e.EndReason = election.EndExpiry
	return e, true
}
