// Package election is the contract between regent and its election
// backends (etcdbackend, pgbackend): what every backend does in every case
// it allows. The backend stores and watches records; the algorithm that
// uses them (when to campaign, when to stop workers) is the supervisor's.
// The suite in electiontest checks each rule below on every backend,
// against a real server.
//
// # Audiences
//
// One Backend serves three audiences, each an interface it embeds:
//
//   - Reader (status, the observer): Leader, Leaders, Members,
//     StepDownRequest(s), History, Changes, Done, Close.
//   - Operator (step-down, worker guards, fence and operator commands):
//     Reader plus RequestStepDown, ReleaseTerm, DeploymentID, the operator
//     records (PutControl, DeleteControl, Controls) and the operator log
//     (RecordAction, Actions).
//   - Campaigner (the supervisor): Campaign and SetMember.
//
// A backend opened with Options.ReadOnly has no session: it is an Operator.
// Its Campaign and SetMember return ErrReadOnly at once, in every state
// (before or after Close), before any other check; every Operator call
// works. Its Done is closed only by Close, and it never returns
// ErrSessionLost: a broken connection makes calls fail with ErrUnavailable
// until it is re-established, which the backend does by itself.
//
// # Errors
//
// Backends wrap the sentinels of this package with %w; test them with
// errors.Is. When a call's context ends first the call returns an error
// for which errors.Is(err, ctx.Err()) holds (Campaign returns ctx.Err()
// itself).
//
// # Campaign
//
// Campaign(ctx, queue, payload) blocks until this replica leads queue,
// then returns the Leadership; the leader record (with payload) is
// published before it returns. Campaigns for different queues run
// concurrently, without limit. For one queue a Backend has at most one
// candidacy: a Campaign called while another Campaign of the same Backend
// for that queue has not returned, or while a Leadership of that queue won
// through this Backend is not Done, fails at once with ErrBusy, and the
// first campaign (or leadership) carries on untouched. Once the Leadership
// is Done (resigned, lost or closed) the queue may be campaigned for again
// at once. A replica campaigns once per queue; a second candidacy would
// win nothing, and waiting in line would only hide the caller's bug.
//
// Campaign returns:
//
//   - the Leadership, nil error;
//   - ErrReadOnly on a read-only backend, ErrBusy as above;
//   - ctx.Err() when ctx ends first (or had ended): the candidacy is
//     withdrawn and leaves nothing behind that could stop another replica
//     from winning. A leadership won at that very moment is either returned
//     (the caller then owns it and must resign it) or resigned by the
//     backend; it is never left held by nobody;
//   - ErrSessionLost when the session ends while it waits, or had ended;
//   - ErrClosed when Close is called while it waits, or was called.
//
// When several apply at once (a cancelled context on a closed backend),
// which of them is returned is not specified, but for ErrReadOnly.
//
// # Terms
//
// Term strictly increases with every new leadership of a queue, whichever
// replica wins, and is never reused: not after a resign, ReleaseTerm, the
// history's trimming or a server restart. Terms may skip values (etcd
// uses revisions). Terms of different queues are unrelated. A
// Leadership's Term equals the Term of its leader record.
//
// # Trust window
//
// A Leadership's ValidUntil is the instant, on this host's clock (see
// internal/boottime: it counts suspend), before which no other replica
// can win the queue: the send time of the last successful renewal plus
// the lease TTL. The holder trusts its leadership until ValidUntil minus
// a margin of its own, and no longer, whatever Done says: a renewal that
// fails does not close Done at once. Renewed receives a value (size 1,
// bursts collapse, never closed) after each renewal that moved ValidUntil.
// Done is closed the moment the backend knows or must assume the
// leadership is lost: its record deleted, released or taken, its session
// ended, ValidUntil passed without a renewal, Resign started, Close. Once
// Done is closed ValidUntil no longer moves and Renewed gets no new value.
//
// # Ends of a leadership, and what followers wait
//
// A clean end releases the record and wakes the followers in one step:
// Resign, Close, and ReleaseTerm of the term (a worker guard, after the
// leader died and its workers are dead). A waiting follower's Campaign
// returns within a backend round trip or two: it does not wait out the
// lease.
//
// An unclean end is everything else: the session killed from outside
// (lease revoked, pg_terminate_backend), the lease expired (leader frozen,
// cut off, dead), the record deleted by hand. The follower's Campaign
// returns only once the old leader can no longer trust its leadership: a
// full lease TTL, on the follower's own clock, after the last renewal of
// the old leader it could have seen; never sooner because the server's
// clock says so. So the next leader starts after the old one's ValidUntil.
//
// History records how each term ended: EndResign (Resign, Close),
// EndReleased (ReleaseTerm), EndLost (session ended from outside) or
// EndExpiry (lease ran out).
//
// # A lost leadership
//
// Once a Leadership is Done, whatever the reason (lost, resigned, Close,
// session lost):
//
//   - Publish returns ErrNotLeader (and changes nothing);
//   - Resign returns nil and changes nothing: it never touches a later
//     term. Resign is idempotent.
//
// While it holds, Resign closes Done before it returns, then releases the
// record. Call it only once the leader's work has stopped. Cancelling its
// context stops the wait, not the release, which the backend completes
// (or retries until the session ends); it then returns ctx.Err(), or nil
// if the release was done first. Another
// error means the release could not be confirmed: followers then wait out
// the lease at worst.
//
// # A lost session
//
// When a read-write backend's session ends (lease expired or revoked,
// lock connection ended), every leadership's Done closes, then the
// Backend's Done. The Backend is spent: every later call but Close, reads
// included, returns an error wrapping ErrSessionLost, waiting Campaigns
// return it, and Changes channels close. Close it and open another (the
// supervisor redials).
//
// # Close
//
// Close resigns every leadership held (a clean end: followers win at
// once), removes the member record, ends the session and waits for the
// backend's goroutines. Every leadership's Done and the Backend's Done are
// closed before it returns; calls blocked in the backend return ErrClosed.
// It is idempotent. Afterwards every call returns ErrClosed (Campaign and
// SetMember on a read-only backend: ErrReadOnly), Changes returns a closed
// channel, Publish returns ErrNotLeader and Resign nil. ctx bounds the
// cleanup: if it ends first, the session is ended without a clean release
// (followers wait out the lease) and Close still returns only once the
// backend has stopped. An error from Close means that part of the cleanup
// could not be confirmed; the backend is closed all the same.
//
// # Deployment id
//
// DeploymentID returns the same id to every caller of one cluster in one
// backend, on any replica and after any restart, read-only backends
// included: the first call creates it atomically (of concurrent first
// callers exactly one id wins), no call changes or deletes it. Another
// cluster, or the same cluster in a rebuilt backend, has another id.
//
// # Operator records and log
//
// An operator record (PutControl) is a (kind, name, value) of the cluster
// with no lease: it stays, through every replica's restart and the
// writer's end, until DeleteControl. Writing or deleting one wakes every
// backend's Changes, like a leader or member record. Controls reads them
// all in one call, sorted by kind and name. The operator log keeps at
// least ActionsKeep entries; Actions returns them newest first, an entry
// that cannot be decoded as action "corrupt_record". Read-only backends
// do all of this: operators use them.
//
// # Cancellation
//
// Every call that may block takes ctx first:
//
//   - Campaign: see above; withdrawing is prompt.
//   - Reads (Leader, Leaders, Members, StepDownRequest(s), History): the
//     call returns promptly.
//   - Writes (SetMember, RequestStepDown, ReleaseTerm, Publish,
//     DeploymentID): the call stops waiting; the write may still take
//     effect.
//   - Resign: see above; the release is not abandoned.
//   - Changes: the channel is closed soon after ctx ends.
//   - Close: see above.
package election
