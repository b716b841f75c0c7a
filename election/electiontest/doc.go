// Package electiontest is the contract test suite every election backend
// must pass, run against real servers: a backend package implements Harness
// in its tests and calls Run.
//
// Every case runs unchanged against each backend, on a real server, in its own cluster (so cases never see each
// other's records), with short timings (lease TTL 2 s, renewal every
// 300 ms, retry every 200 ms).
//
// What the suite proves, case by case:
//
//   - Exclusion: among five replicas campaigning for one queue, at most one
//     holds leadership at any instant (from Campaign's return to its
//     release), checked continuously over many handovers; terms grow.
//   - Terms: strictly increasing over twenty handovers, and equal to the
//     term of the published record.
//   - Resign: a waiting campaigner wins well before the lease TTL.
//   - Unclean loss: a holder whose session is killed from outside sees
//     Done, and the next leader starts only after the old holder's
//     ValidUntil; a holder process killed with SIGKILL is replaced with a
//     greater term, after about a lease TTL.
//   - Scale: 200 queues led by one replica use a bounded number of
//     connections (Harness.MaxConnections), and are won quickly.
//   - Records: leader and member records are readable from a read-only
//     backend; Publish changes the payload; Changes wakes on leader and
//     member changes; member records vanish with their session; a corrupt
//     record is an error wrapping election.ErrCorruptRecord, never a panic.
//   - Step-down requests are stored and wake Changes; ReleaseTerm with the
//     right term lets a waiting campaigner win at once, a wrong term does
//     nothing.
//   - History lists a queue's terms newest first, bounded by its limit,
//     with how each ended: resign, released, lost (session killed from
//     outside), expiry (holder process killed).
//   - Lifecycle: Campaign honours its context; Close is idempotent, resigns,
//     wakes blocked calls, and later calls fail with election.ErrClosed.
//   - One candidacy per queue: a second Campaign of one Backend for a
//     queue, while the first waits or its leadership holds, fails at once
//     with election.ErrBusy and leaves the first untouched.
//   - Read-only: Campaign and SetMember fail at once with
//     election.ErrReadOnly, before and after Close; every Operator call
//     works.
//   - Lost leaderships (resigned, released by ReleaseTerm, closed, session
//     killed): Publish returns election.ErrNotLeader, Resign nil, and a late
//     Resign never touches the next leader's term. A backend whose session
//     was killed is spent: every call returns election.ErrSessionLost and
//     its Changes channels close. Resign with a cancelled context still
//     closes Done and releases cleanly.
//
// Helper processes: a backend package's TestMain must call HolderMain
// first, so that the suite can re-execute the test binary as a leader that
// is then killed with SIGKILL.
//
// Timing: the suite waits for conditions with deadlines, never for fixed
// pauses; the only bounded windows are those that assert that something
// does not happen (a campaigner does not win while another leads).
package electiontest
