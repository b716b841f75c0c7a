// Package fence is fencing at the protected resource: a worker of regent
// claims its fencing token inside its own PostgreSQL transaction, before
// its writes, and the resource (the worker's own database) refuses a
// stale term or a foreign owner. regent's self-fencing (trust windows,
// guards) keeps old workers from running; this package makes their writes
// fail even when one still runs (a paused VM, a partition, a bug).
//
// It depends on nothing else of regent: Go workers import it, SQL-only
// workers call the same functions, and regent uses it to install the
// schema, show the rows in status and transfer keys.
//
// # The pattern
//
// A token is (key, term, owner): key names what is protected (usually the
// queue), term is regent's REGENT_TERM (strictly increasing per queue
// within one deployment), owner names the deployment (cluster) that may
// write. A worker does
//
//	tx, _ := conn.Begin(ctx)
//	if _, err := fence.Claim(ctx, tx); err != nil { // token from the environment
//		tx.Rollback(ctx)                           // ErrStaleTerm, ErrForeignOwner: stop working
//		return err
//	}
//	// ... writes ...
//	tx.Commit(ctx)
//
// or, in SQL, `SELECT regent_fence.claim('emails', 9, 'prod')` first in
// the transaction; after an RF001 or RF002 it rolls back and calls
// `SELECT regent_fence.record_refusal('emails', 9, 'prod', 'node-1')` in
// a short transaction of its own (Token.Claim and Token.ClaimSQL do this).
//
// regent_fence.claim(key, term, owner), per key, in this order:
//
//   - no row yet: records (key, term, owner, owner_since = at = now())
//     and passes (concurrent first claims: one inserts, the others wait
//     for it and decide again);
//   - owner differs from the recorded one: SQLSTATE RF002 (ErrForeignOwner),
//     message naming the key, both owners and since when the current one
//     holds it;
//   - same term: passes holding a shared row lock (FOR SHARE): the
//     workers of one term never wait for each other;
//   - newer term: moves the fence forward under an exclusive row lock
//     (UPDATE ... WHERE term < new), which waits for the shared locks of
//     the older term's open transactions;
//   - older term: SQLSTATE RF001 (ErrStaleTerm), e.g. `regent_fence: stale
//     term 7 for key "emails": the resource already accepted term 9`.
//
// Both locks last until the worker's transaction ends, and every decision
// is taken again on the row read after the lock was granted (READ
// COMMITTED re-reads the newest version after a wait). Hence the
// invariant: a term-T transaction that claimed before a term-T+1
// transaction commits before the T+1 claim passes, or fails; a term-T
// claim after the move waits for the mover and is refused once it
// commits. A term-T write never commits after a term-T+1 write.
// Row.At is when the recorded term was first claimed; same-term claims
// write nothing.
//
// # The stall bound
//
// An old-term transaction that stalls while holding the row (its client
// paused, "idle in transaction") would block the next term for ever. A
// claim that moves the fence (or inserts the first row) therefore waits
// at most the stall timeout (regent_fence.settings.stall_timeout_ms,
// default 5 s, InstallOptions.StallTimeout) at a time: on lock_timeout it
// ends (pg_terminate_backend) every session whose open transaction
// claimed the key at an older term, then tries again; their transactions
// roll back, and the new term passes. Bound: a stalled older term delays
// the next term by the stall timeout plus the few milliseconds a session
// takes to end. Sessions of the mover's own or a newer term are never
// ended (nor the mover's own): when only such transactions hold the row,
// the mover waits as its own lock_timeout allows, as same-term peers of a
// mover do. After stall_rounds (10) rounds that each ended someone, the
// mover also waits without the bound: old-term claims still arriving then
// mean the old term's workers are not stopped at all.
//
// Which session holds which term is visible in pg_locks: every claim also
// takes two transaction-level shared advisory locks, in the two-integer
// key space (objsubid 2; regent's own election locks use the bigint
// space): (hashtext('regent_fence/hi/'||key), high 32 bits of the term)
// and (hashtext('regent_fence/lo/'||key), low 32 bits), so terms of any
// size compare exactly, and a session of another key is mistaken for one
// of this key only if both hashes collide.
//
// Ending sessions needs the role that owns the functions (the installing
// role: the functions are SECURITY DEFINER) to be superuser or a member of
// pg_signal_backend (GRANT pg_signal_backend TO installer); ending a
// superuser's session needs a superuser owner. Without the privilege a
// stalled older term makes the mover fail with 55P03 and a hint saying so.
// idle_in_transaction_session_timeout on the worker roles is a useful
// second bound, not a replacement (it does not cover a stalled statement).
// Old-term claims that keep arriving while a mover waits get their shared
// lock (PostgreSQL does not queue a shared row lock behind a waiting
// exclusive one), so they can delay a move; they are ended in the next
// round.
//
// # Isolation levels
//
// Claim in READ COMMITTED (PostgreSQL's default). In REPEATABLE READ or
// SERIALIZABLE a claim that meets a move committed after the transaction's
// snapshot fails with 40001 (serialization_failure) instead of waiting and
// re-reading: roll back and retry the transaction; the new transaction's
// claim then passes or is refused with RF001. claim also raises 40001 in
// the (unlikely) case that the row kept changing during eight decisions.
//
// # Owners and transfer
//
// The first claim of a key sets its owner; there is no time-based
// takeover. regent_fence.transfer(key, to, by) (Transfer) gives a key to
// another owner on purpose, recorded in regent_fence.transfers with who
// and when; it waits for the open transactions that claimed the key. It
// resets the term to 0, since terms of different deployments do not
// compare: the new owner's first claim passes at any term, the old owner
// is refused with RF002. A transfer to the current owner keeps the term
// (resetting it would let the owner's own stale workers through).
//
// # Refusals
//
// regent_fence.record_refusal decides the code from the fence row itself
// (RF002 when the owner differs, else RF001) and stores it with the
// current term and owner; nothing is stored for a key without a row. The
// log keeps 7 days and at most 1000 entries per key, trimmed on insert.
// Refusals reads it.
//
// # Grants
//
// Everything is revoked from PUBLIC. A worker role needs only (GrantSQL):
//
//	GRANT USAGE ON SCHEMA regent_fence TO worker;
//	GRANT EXECUTE ON FUNCTION regent_fence.claim(text, bigint, text),
//	    regent_fence.record_refusal(text, bigint, text, text) TO worker;
//
// It cannot read or write the tables, transfer, or change the settings.
// regent's own role (status, transfer) connects as the installing role or
// as one granted SELECT on the tables and EXECUTE on transfer.
//
// # Schema versions
//
// The schema is versioned (regent_fence.version, SchemaVersion). Install
// (or the SQL of SQL(), `regent fence sql`, one transaction) is idempotent
// and safe to run concurrently (a transaction advisory lock serializes
// installs); over a schema written by a newer package it changes nothing
// and fails with RF003 (ErrNewerSchema).
//
// # HTTP downstreams
//
// SetHeaders and TokenFromHeaders carry a token in Regent-Fence-Key,
// Regent-Fence-Term and Regent-Fence-Owner (key and owner percent-encoded;
// Regent-Fence-Node optional). A Checker applies the same rules to a
// service that keeps its fence in memory; it only admits requests, it
// cannot hold back or end an older request already admitted.
//
// # Cost
//
// Measured with BenchmarkClaim (`go test -run '^$' -bench Claim
// -benchtime 10000x ./fence/`, 10,000 transactions per case, a local
// PostgreSQL 15, one connection, a 2-core VM; ranges over five runs): a
// same-term claim takes a median of 54-88 µs and a p99 of 153-227 µs,
// against 43-55 µs and 99-138 µs for a `SELECT 1` round trip, so claim
// adds about 30 µs to a worker transaction. A claim that moves the fence
// (once per term): median 84-141 µs, p99 210-384 µs. The
// shared row lock marks the row, so the transaction gets an id and its
// commit writes WAL (a worker that writes does so anyway).
package fence
