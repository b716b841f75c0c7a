// Package etcdbackend is the etcd implementation of election.Backend.
//
// # Session
//
// A Backend holds one etcd lease, its session, shared by its member record
// and every leadership it holds. The lease is renewed by the Backend's own
// loop (one KeepAliveOnce every RenewInterval; never the client's
// automatic keep-alive), which records the monotonic time at which each
// renewal was sent. The trust window of every leadership is
//
//	ValidUntil = send time of the last successful renewal + lease TTL
//
// (for the first, the send time of the Grant). etcd starts the lease's
// new TTL when it receives the renewal, after it was sent, so no other
// replica can win before ValidUntil; callers subtract their own margin.
// While renewals fail the loop keeps trying every quarter RenewInterval
// (at most 250 ms); once ValidUntil passes without a renewal every
// leadership's Done closes (the leader must assume it lost), and their
// keys are released once etcd answers again if the lease survived. If
// etcd says the lease is gone, the session is lost: every leadership's
// Done and the Backend's Done close, and the Backend must be replaced.
//
// # Keys
//
// Everything lives under /regent/<cluster>/:
//
//	queues/<queue>/leader    leader record (JSON), on the leader's lease;
//	                         its CreateRevision is the term
//	queues/<queue>/term      no lease; written with every new leader key:
//	                         its ModRevision is the latest term, its value
//	                         that leadership's lease and TTL, node, host
//	                         and election time
//	queues/<queue>/released  no lease; written when a term ends cleanly
//	                         (resign, ReleaseTerm): the term released,
//	                         how and when
//	history/<queue>/<term>   no lease; one per earlier term (20 digits):
//	                         node, host, from, to, end reason
//	stepdown/<queue>         step-down request, on its own lease of
//	                         StepDownTTL; deleted by the next leadership
//	members/<node>           member record (JSON), on the node's lease
//	leases/<lease in hex>    heartbeat, on that lease: rewritten after each
//	                         renewal while the replica leads something
//
// Terms are etcd revisions: globally monotonic, so strictly increasing per
// queue. A leadership is taken by one transaction: if the leader key does
// not exist and the term key is unchanged since it was read, create the
// leader key on the lease, write the term key and delete the step-down
// request. Publish and Resign are transactions guarded by the leader
// key's CreateRevision being the term.
//
// # Waiting and taking over
//
// A follower watches the queue's leader key and the leader's heartbeat key
// from the revision it read (no polling; two narrow watches, so that a
// replica standing by for hundreds of queues is not sent every write of
// the cluster once per queue) and tries again when the leader key is
// deleted; its Campaign
// also ends when ctx is done, the session is lost or the Backend closes
// (etcd issue 19597: a campaign must not outlive its session). How soon
// it may take over depends on how the last term ended:
//
//   - Cleanly (the released key holds the term): at once. Resign and
//     ReleaseTerm are only called once the leader's work has stopped.
//
//   - Uncleanly (lease expired or revoked by an administrator, key
//     deleted by hand): the old leader may still trust its leadership
//     until its own ValidUntil, unknown to the follower. A leader that
//     leads sends each renewal before the heartbeat that follows it, and
//     a leadership's creation follows its renewals so far; so the
//     follower, which watched the creation (or the leader key's presence)
//     and the heartbeats, knows that no renewal counted by the old leader
//     was sent after the last of those events it saw (or after the moment
//     its watch was re-established). It holds back until that moment plus
//     the old leader's TTL (from the term key). After a lease expiry this
//     is already past, so failover takes about one TTL; after a revoke it
//     waits at most one TTL.
//
//     The two watches deliver apart, though: when the key's deletion (at
//     revision R) arrives, a heartbeat written just before it may not
//     have, and the follower would count from an older one, up to one
//     renewal interval too early (an administrator revoking a cut-off
//     leader's lease right after a renewal). So it first reads the
//     heartbeat key as of revision R-1: a heartbeat newer than the last
//     it saw was written before the deletion, so before the follower saw
//     the deletion, and that moment takes the place of the last event
//     seen. If etcd cannot tell (R-1 compacted, etcd unreachable), the
//     same: a whole TTL from the deletion seen is always enough. No
//     heartbeat after R can count: a lease revoked or expired at R loses
//     its keys with it and takes no more writes, and a leader counts a
//     renewal only once its heartbeat is written. (A key deleted by hand
//     leaves the lease alive; its leader's own watch sees the deletion
//     and gives the leadership up.) The read costs one request per lease
//     and unclean end, shared by the campaigns of every queue the lease
//     held (their keys go at one revision); none on a clean end.
//
//     A follower that starts watching a term late (a campaign begun or
//     restarted while the leader was already gone) also bounds the
//     leader's last renewal from the lease's remaining TTL, asked of etcd
//     after its read (etcd received every renewal counted so far at least
//     granted - remaining - 1 seconds earlier); without that bound (lease
//     unknown) it holds back a full TTL from when it started watching.
//
// # History
//
// The latest term of a queue is described by its term key (and its
// released key once it ended cleanly); every earlier term by a history
// key. The transaction that creates a leadership also writes the history
// key of the term before it and deletes the oldest history keys, so that
// election.HistoryKeep terms are kept with the latest: history costs
// nothing per renewal and no request of its own per handover. How the
// previous term ended: the released key says resign (Resign, Close),
// released (ReleaseTerm) or, for a key given up when the leader's trust
// window ran out and released later, expiry; with the releaser's time.
// Otherwise, a leader
// still alive whose key was deleted or lease revoked before its own
// ValidUntil records "lost" itself, at once; failing that, the follower
// judges "lost" if it watched the key vanish well before the lease could
// have run out (last heartbeat seen + TTL - margin), else "expiry" (the
// leader died, froze or was cut off), with the time it saw the key go.
// A refused history write (an ACL, say) never blocks a campaign: it
// retries without history and logs it.
//
// While a step-down request names another node, candidates hold back for
// their StepDownHold (election.Timing) after the request (judged from its
// lease's remaining TTL, not from clocks); with no node named, only the
// replica asked to step down holds back.
//
// # Invariants
//
//   - A Leadership is returned only while the session's ValidUntil is in
//     the future, and its Done closes at once when its key is deleted or
//     replaced (seen by a watch on the key), when the session is lost,
//     when ValidUntil passes, on Resign and on Close.
//   - A leader key of this Backend's lease that no Leadership uses (left
//     by a request whose outcome was unknown, or by a leadership given up
//     while etcd was unreachable) is released cleanly by the next renewal
//     or campaign: nobody acts on it.
//   - Every goroutine (the session loop, one watcher per leadership, one
//     per Changes call) is owned by the Backend and ends before Close
//     returns; calls in flight are cancelled by Close and waited for.
//   - Stored records are decoded defensively: an undecodable value is
//     reported as election.ErrCorruptRecord naming its key, never a panic.
//   - Errors reaching etcd wrap election.ErrUnavailable and name the
//     endpoints; passwords are never logged nor put in errors.
package etcdbackend
