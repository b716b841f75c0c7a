// Package pgbackend is the PostgreSQL election backend: an
// election.Backend built on session advisory locks, a lease table with an
// expiry on the server's clock, and LISTEN/NOTIFY.
//
// # Connections
//
// A replica holds ONE dedicated connection, the lock connection (a
// pgx.Conn, never a pool: advisory locks belong to one server session),
// whatever the number of queues. Its application_name is
// "regent:<cluster>:<node>". A single goroutine, the actor, owns it: other
// goroutines hand it commands; between commands it renews on a timer,
// retries waiting campaigns, and keeps a read pending
// (WaitForNotification) so that a NOTIFY, or the end of the session
// (pg_terminate_backend by an administrator, a server restart), is seen
// within milliseconds: every leadership's Done and the backend's Done
// close at once, and the backend is finished (make a new one). A
// read-write backend also LISTENs on RenewalChannel (see "Waiting out an
// unclean end"). At start New opens one more, short-lived connection
// (application_name "regent-probe:<cluster>:<node>") to detect a pooler,
// and closes it.
// A read-only backend has one plain connection, takes no lock, and
// reconnects by itself when the connection drops; its Campaign and
// SetMember return election.ErrReadOnly.
//
// # Locks and records
//
// The lock of a queue is the session advisory lock LockKey(cluster, queue):
// a 64-bit hash of ("regent", cluster, queue) computed in Go; nothing local
// (path, home directory, user, pid) enters it. The table regent_leaders
// holds one row per (cluster, queue): node, host, pid, term, payload
// (jsonb; the exact bytes in payload_raw), elected_at, lock_pid (the
// server pid of the holding session), released, and expires_at: NULL
// while the record follows its session's lease, else a lease of its own
// (set on release, or when the session stops covering it). The lease of a
// session is one row of regent_sessions per (cluster, pid): renewed_at
// and expires_at, on the server's clock, written when the session starts
// and by every renewal, leader or not; a record's lease is its own
// expires_at, else its session's (the row of its cluster and lock_pid).
// Leader rows are written only when leadership changes, never by a
// renewal (renewed_at of regent_leaders is no longer used). A lock
// session, before it leads, gives the records of an earlier session with
// the same pid (pids are reused, and differ after a failover) that
// session's lease as their own, so it cannot revive them. regent_members
// holds member records (live while expires_at > now() and their session
// exists); regent_stepdowns holds step-down requests; regent_history the
// last terms of each queue. Every change is announced with NOTIFY on
// NotifyChannel, payload {"cluster","queue","kind"}.
//
// # State machine of a queue, per replica
//
//	idle ──Campaign──▶ waiting ──try-lock ok──▶ locked ──lease free──▶ leading
//	  ▲                   ▲  │                   │ (wait out the old    │
//	  │                   │  └─stale holder: end │  lease, holding      │
//	  │                   │    it, retry         │  the lock)           │
//	  │                   └──────────────────────┴───── Resign / lost ◀─┘
//	  └──── withdrawn (Campaign's ctx ended), from waiting or locked
//
// A queue has one candidacy per Backend: a second Campaign for it, while
// one runs or its leadership is not Done, fails at once with
// election.ErrBusy without asking the actor (Backend.claim). Resign
// closes Done before the actor runs its command, which runs even if the
// caller's ctx ended (callAlways); reconcile leaves such a leadership's
// lock to it, so the release stays clean.
//
// In detail:
//
//   - waiting: every RetryInterval, and at once on a "released" NOTIFY,
//     one statement tries the locks of all waiting queues
//     (pg_try_advisory_lock). A queue held back by a step-down request
//     naming another node is not tried until the successor won or the hold
//     (the lease TTL) ended. A lock held while no leadership is in force
//     (no record, a released one, or a lease expired more than a small
//     grace ago) is held by a session that does not lead: a leader frozen,
//     or cut off behind a pooler or proxy, whose server session lingers;
//     or a follower frozen or cut off while locked. Once the previous
//     lease has also run out on the follower's own clock (see "Waiting out
//     an unclean end"), the follower reads that session from pg_locks and
//     ends it with pg_terminate_backend once it is stale: its own session
//     lease expired more than the grace ago, or it is the session the
//     record names (lock_pid) and the record's lease did; then it retries
//     at once. The try-lock statement reports, for each lease that still
//     runs, how long until it becomes stale, and the holder statement the
//     same for the holder's session lease (on the server's clock); the
//     follower tries again at that moment, or when its own clock allows if
//     that is later, when it comes before the next RetryInterval, so
//     failover after a frozen or cut-off leader is the lease's expiry plus
//     the grace (TTL/20, 100ms to 1s), not plus up to a retry interval.
//   - locked: holding the lock, the replica records itself as leader only
//     if the previous row is released, or else expired both on the
//     server's clock and on its own; otherwise it waits until that lease
//     has passed and asks again. The term is incremented (term = old
//     term + 1) in the same statement, hence the same transaction, that
//     records the new leader, so it strictly increases for the queue.
//     While it waits, its renewals keep its session lease running: that
//     is what tells the other replicas that the holder lives (see
//     Liveness bounds).
//   - withdrawn: a Campaign whose ctx ended asks the actor to remove it,
//     and the actor does so even when Campaign stopped waiting for it
//     (the actor busy in a long statement or a large batch). The actor
//     also checks every campaign's ctx itself, before it tries locks and
//     again before it takes over: a withdrawn campaign is dropped and a
//     lock taken for it freed. One withdrawn while its takeover statement
//     ran is not handed the leadership: the actor resigns it at once
//     (record released, lock freed, followers notified), as it does a
//     leadership handed over that Campaign did not take. So a withdrawn
//     campaign never leads later, which would leave the queue recorded
//     for a replica that runs no worker for it, renewed by its session,
//     out of every other replica's reach.
//   - leading: one statement per RenewInterval renews the session's
//     lease row, which every record it holds follows, and the member
//     record: at most two row writes whatever the number of queues (the
//     session's is announced on RenewalChannel). It reads back the
//     records of the terms held (lock_pid = pg_backend_pid()); a queue
//     missing from the result was released (ReleaseTerm) or taken: that
//     leadership is lost, its lock freed. A record of the session no longer among the terms held (its
//     leadership ended on its deadline) gets, in the same statement, the
//     session's lease as it was before the renewal as its own, so the
//     renewal does not extend it. The takeover sets the session's lease
//     to now + TTL.
//     Resign marks the row released, frees the lock and notifies in one
//     statement, so followers take over within milliseconds.
//
// # History
//
// regent_history (schema version 2) holds one row per term of a queue:
// node, host, started_at, ended_at, end_reason. The statements that change
// leadership write it themselves, so in the same transaction: the takeover
// opens the new term's row, closes the previous one if still open and
// keeps the newest election.HistoryKeep rows of the queue; resign and
// Close close it as "resign", ReleaseTerm as "released". An unclean end
// looks the same to a follower whether the leader died or its session was
// ended from outside (the lock is freed early either way), so the
// takeover records "expiry", ended at the old lease's expiry, and a
// leader that survives the end of its session while its lease still ran
// (pg_terminate_backend by an administrator, a server restart) records
// "lost" first, through one short-lived connection. A stale session ended
// by a follower had an expired lease: "expiry". Nothing is written per
// renewal; a statement whose history part fails is run again without it
// and the failure logged, so history never blocks an election.
//
// # Trust window
//
// ValidUntil is the monotonic send time of the last successful renewal
// (or of the takeover) plus LeaseTTL. The server set the session's
// expires_at to its own now() + TTL when it ran that statement, which is after the send, so no
// other replica can lead before ValidUntil. A timer per leadership closes
// Done at ValidUntil unless a renewal moved it, even while the actor is
// stuck in a statement; callers subtract their own safety margin. A
// follower that gets the lock of a dead or cut-off leader still waits out
// its lease: the old leader's workers have stopped by then on their own
// deadline (safety property 2). The server measures leases on its wall
// clock, which a step moves (ntpd steps beyond 128 ms; a failover lands on
// a host with another clock): followers therefore also wait on their own
// clock (below), so a step forward cannot shorten a lease in force; a
// step back lengthens it on the server, which only delays failover.
//
// # Waiting out an unclean end
//
// How soon a follower may take over depends on how the last term ended:
//
//   - Cleanly (the record is released: Resign, Close, ReleaseTerm): at
//     once. These are only called once the leader's work has stopped.
//   - Uncleanly (the lease ran out, the session was killed or ended as
//     stale, the server restarted): the old leader may trust its
//     leadership until its own ValidUntil, unknown to the follower. The
//     follower does not lead, nor end the holder's session, before the
//     lease's TTL has passed on its own clock (internal/boottime: counts
//     suspend, never steps) since the last renewal it could have seen.
//
// Every write that may extend a leader's trust changes the lease's
// version: a renewal or a takeover writes the session's lease row (its
// xmin changes), a new term or a lease of its own changes the record. Each
// such write of the session row is announced on RenewalChannel with the
// row's new xmin, so a follower dates it on its own clock within
// milliseconds. A follower reads the version with every lock attempt and
// takeover, and dates each version from the first time it knew of it: the
// notice that announced it, or else the answer of the statement that read
// it. The write that made a version was sent before either, and so was
// every renewal counted before it. The follower holds back until that
// date plus the TTL the leader recorded in its session row (expires_at -
// renewed_at, both from one now(); at least the follower's own TTL). A
// follower that starts watching late (a campaign begun or restarted, or a
// new session after a failover or a server restart) knows no earlier
// date than its first sight: it holds back a full TTL from then (after a
// failover to a standby, that sight comes after every renewal the old
// primary received, replicated or not). So after
// a crash, a freeze or a cut, failover still takes about one TTL (the
// last renewal was heard as it happened), and after a session killed by
// an administrator at most one TTL; a replica that starts while a dead
// leader's record stands waits one TTL.
//
// The takeover statement checks that the lease is still the version
// waited out (else it reports the new one, and the follower waits again).
// That is enough: it runs while the follower holds the queue's lock, and a
// session frees its locks only after its last commit (when it ends) or
// once the leadership is lost (its own unlock), so the statement's
// snapshot holds every renewal the old leader counted: none is newer than
// the version waited out. A renewal that committed but whose answer was
// lost is seen though not counted: it only makes the follower wait
// longer. Forgetting a notice, or hearing one late, only does that too.
// During a rolling upgrade, a leader running an earlier regent announces
// no renewals (followers date them at their next lock attempt, up to a
// RetryInterval late), and a follower running one waits on the server's
// clock alone.
//
// # Liveness bounds
//
// A session that holds a queue's lock while no leadership is in force
// keeps the queue until it is stale, no longer. A follower frozen
// (SIGSTOP, a paused VM) or cut off while it waits out the previous lease
// with the lock, or between taking the lock and recording itself, blocks
// the queue until max(its last renewal + TTL, the previous lease's
// expiry) + the grace, plus a few round trips; its last renewal came at
// most a RenewInterval before it stopped, so that is at most TTL + grace
// after the freeze (10.5 s for the default 10 s TTL). The next
// follower's attempt comes at that moment, not on its retry tick, and
// ends the session (with the privilege below; the session loses every
// leadership it held, which had expired with its lease anyway). A leader
// frozen or cut off is the same case: its records follow its session
// lease. During a rolling upgrade, a replica older than this rule renews
// its session lease only while it leads: if it led earlier in its
// session, its session may be ended while it holds a lock as a follower;
// if it never did, it has no lease row and is never ended.
//
// # Keepalive bound
//
// With Linux defaults a vanished client's session, and its locks, would
// live about 2 h 11 min. The lock connection therefore sets, on the client
// socket, TCP keepalive (idle ⌈TTL/2⌉ s, interval ⌈TTL/8⌉ s, 4 probes)
// and TCP_USER_TIMEOUT = TTL, and on the server session the same
// tcp_keepalives_idle/interval/count and tcp_user_timeout. The server
// frees a dead host's locks within bound = max(idle + 4·interval, TTL)
// (13 s for the default 10 s TTL), which is never shorter than the TTL, so
// the leader's own deadline (at most TTL after its last renewal was sent)
// always falls first. The lease makes safety independent of this bound; it
// only speeds up failover when ending a stale session is not permitted.
// Through a pooler or proxy these server settings apply to the pooler's
// connection, not to the client: there, the lease and the stale-session
// termination are what free the queue.
//
// # Privileges
//
// The role needs to create tables on first start (or an operator runs a
// first start with such a role), and pg_terminate_backend on the stale
// session: allowed to superusers, to members of pg_signal_backend (for
// non-superuser sessions), and to members of the role that owns the
// session, so replicas that all use the same role need nothing more. A
// refusal is logged ("cannot end stale session: permission denied ...")
// and the follower then waits for the server to drop the session (the
// keepalive bound; never, for a session frozen on a live host) or for an
// operator.
//
// # Poolers, standbys, failures
//
// A transaction- or statement-mode pooler breaks session advisory locks
// and LISTEN: New detects it (the backend pid changes between statements,
// or two clients share a server session) and refuses with
// election.ErrUnsupportedPooler; a session-mode pool is accepted. A server
// in recovery (a standby after failover) is refused with
// election.ErrUnavailable, and a session that meets a read-only error is
// lost. An unreachable server makes New fail within DialTimeout with
// election.ErrUnavailable naming host:port; messages and logs never carry
// the password. StatementTimeout bounds every statement on both ends but
// not the wait for notifications.
//
// # Schema
//
// regent creates and migrates its tables itself, idempotently: the
// migrations run in one transaction under a transaction-level advisory
// lock, with the version in regent_schema_version, so replicas starting
// together migrate once. Migrations only add, except version 3 (the
// session lease): it clears renewed_at of regent_leaders and adds the
// constraint regent_schema_v3_needs_newer_regent (renewed_at IS NULL),
// so a replica older than version 3, which would misread a record that
// follows its session as one without a lease, fails on its first
// takeover or renewal with an error naming that constraint instead of
// running. Records written before version 3 keep their expires_at, a
// lease of their own, which is still waited out.
//
// # Invariants
//
//   - Only the actor goroutine uses the lock connection; a statement never
//     runs with a caller's context (a cancelled caller would kill the
//     session), only with the actor's, bounded by the statement timeout.
//   - A leadership is returned only while this session holds the queue's
//     advisory lock and its row holds the new term with an unexpired lease.
//   - After an unclean end, a leadership is returned, and a stale session
//     ended, only once the previous lease's TTL has passed on this
//     replica's boottime clock since the last renewal it could have seen.
//   - Every goroutine has an owner: the actor is stopped by Close (which
//     waits for it) or by the session's end; deadline timers are stopped
//     when their leadership ends; Changes channels are closed by their
//     context, Close, or the session's end.
package pgbackend
