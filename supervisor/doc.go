// Package supervisor is regent's campaign loop and the duties of leaders
// and followers.
//
// For each configured queue one goroutine campaigns through the election
// backend. When it wins, it leads:
//
//	follower --Campaign returns--> leader --lost/deadline/stop/step-down--> follower
//
// A leader trusts its leadership only until
//
//	deadline = ValidUntil() - FenceMargin
//
// where ValidUntil is the monotonic send time of the last successful
// renewal plus the lease TTL, as reported by the backend. Every renewal
// moves the deadline and is forwarded to the worker guards, which kill
// their workers at the deadline on their own (the dead-man's switch), even
// if this process is frozen or dead. If the deadline passes, or the
// backend reports the leadership lost, the leader stops its workers at
// once — SIGKILL no later than the deadline — and campaigns again as a
// follower. On a graceful stop or step-down it stops its workers (SIGTERM,
// stop_timeout, SIGKILL, still bounded by the deadline), and only then
// resigns, so the next leader's workers never overlap its own.
//
// Leader work runs in a worker pool whose context is owned by the lead
// loop; nothing the leader starts outlives its leadership.
//
// Followers keep their session open, publish a member record with their
// effective config, watch the leader records and report, as log events,
// metrics and in their member record: config conflicts with the leader,
// two members claiming one queue (split brain), and live workers of a term
// older than the queue's current one (stale workers). What the records
// mean — payloads, conflicts, split brain, stale workers, problems and
// their one grace — is package diagnosis's, the same diagnosis that
// `regent status` and /status print; the observer only acts on it.
package supervisor
