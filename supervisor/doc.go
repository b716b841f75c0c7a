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
// where ValidUntil is the send time of the last successful renewal plus
// the lease TTL, as reported by the backend, on a monotonic clock that
// counts host suspend (internal/boottime; Config.Now). Every renewal
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
//
// # Parts
//
// Supervisor is only the assembly: New builds the parts, and Run starts,
// on each backend session, one goroutine per part and waits for all of
// them before it closes the session (each goroutine has an owner and an
// end). Each part owns its state; no lock is shared between parts. They
// meet through narrow methods and channels:
//
//	             records                decisions
//	backend ---> observer ---> balancer ---------+
//	                |  step-down, conflicts,     |
//	                v  holds                     v
//	           queueRunner (one per queue) <-----+ yield, holds
//	                |  status (immutable value)
//	                v
//	          memberPublisher ---> backend (member record)
//
// The parts:
//
//   - The per-queue runner (queue.go queueRunner, campaign, the
//     hold-backs) campaigns, waits out holds, and hands each leadership
//     won to a leaderRun (lead.go): one value per leadership, owned by the
//     queue's goroutine, that starts the term's pool, follows renewals,
//     fences at the deadline (rechecked every second, as Go timers do not
//     count a suspend), stops the workers and resigns only once they are
//     dead. A step-down request naming a successor is written off its
//     select loop, so that renewals, a loss and the fence are handled
//     while the backend answers. The runner publishes what it is (role,
//     term, deadline, pool, a follower's conflicts) as an immutable
//     queueStatus swapped atomically, read by the observer, the member
//     publisher and the HTTP handlers (Leads). Other parts reach it only
//     through its step-down and yield channels (size 1, non-blocking
//     sends) and its hold-back mailbox (hold.go holds: an immutable value
//     and a wake-up channel).
//   - The observer (observe.go observer) turns the backend's records into
//     a diagnosis.Snapshot and acts on package diagnosis's report:
//     metrics, one log line per new anomaly, the config conflicts of its
//     runners, step-down requests relayed to the runners (requestStepDown,
//     holds). It runs the balancer on its own goroutine and carries out
//     its decisions.
//   - The balancer (balance.go balancer) decides, from one observation,
//     which queues this replica yields and which it holds back from: its
//     decisions are a function of the records and of its own memory
//     between observations (balanceTracker: recent drops, the batch under
//     way), returned to the observer as a list of actions.
//   - The member publisher (member.go memberPublisher) republishes this
//     replica's member record from the runners' statuses when woken (a
//     leadership started or ended, workers or conflicts changed) and
//     every 5 s for the workers' RSS.
//   - The control reader (controlread.go controlReader) reads the
//     operator records when a runner that just won asks (one read serves
//     every request made before it began) and hands them to every runner;
//     a new leader starts no pool before such a read (see Pause below).
//   - Worker pools (workerpool.go) run each term's workers with package
//     worker; the pool logs each worker event once under its stable name,
//     and the supervisor turns them into restart metrics.
//
// Two clocks: the leader's deadlines run on Config.Now (monotonic and
// counting host suspend); the balancer, the hold-backs and the observer
// compare local instants with the records' wall times (a member's last
// seen, a step-down request's time), so they run on the wall clock
// (clock.go), which tests replace with one they advance.
//
// # Step-down and hold-back
//
// `regent step-down` writes a step-down request for the queue's current
// term, naming a successor or none. The leader's observer sees it and
// ends the leadership gracefully (workers stopped, then resign). Until the
// successor wins or the hold ends (StepDownHold, at most the lease TTL),
// every other replica holds back its candidacy, and the replica that
// stepped down holds back too, so the queue goes where it was sent
// instead of back to its old leader.
//
// # Drain
//
// `regent drain` writes an operator record under a node id
// (control.Drain); the observer reads the operator records on every
// observation. A replica whose node is drained (balance.go, "Drain")
// hands every queue it leads to the live, non-drained replicas standing
// by for it, by the same targeted handover as balancing (yield channel,
// step-down request naming the receiver, workers stopped, then resign),
// and holds back its candidacy for every queue another live, non-drained
// replica lists (holds.holdDrain: interrupting, refreshed by each
// observation). It stands by for, and keeps, a queue no other such
// replica lists. The other replicas count it out of balancing and
// prefer, and start no batch of their own while it still leads some of
// their queues. A drain is obeyed with balancing off too. The runners
// first campaign only after the observer's first observation of a
// session, so that a drained replica restarted never wins a free queue
// before it has read its drain. The replica announces, in its member
// record, that it obeys (drained), what it supports (features), and the
// HTTP address it listens on; it logs drained and undrained once per
// change and sets regent_drained.
//
// # Pause, restart in place, reload
//
// The operator records (package control) are read by the observer with
// every observation and handed to each runner as an immutable value
// swapped atomically, with a wake-up of its lead loop (setControl; size
// 1, non-blocking). A reload hands a runner new settings the same way
// (setConfig). The lead loop (control.go apply) compares what is wanted
// with what runs and takes one step at a time, never blocking: the term's
// pool runs only while the queue is not paused, so a leadership may run
// no pool, or several one after the other (pause and resume, a new
// concurrency), never two at once; a restart runs off the loop
// (Pool.Restart, rolling or all at once) and its end comes back to the
// loop. All along the leader renews and fences as always: a paused or
// restarting leader keeps its leadership, its deadline and its fence.
// A new leader starts no pool until it holds the records of a read begun
// after it won: it asks the controlReader for one at once (one read
// serves every leader that won before it began, so thousands of queues
// won together cost one or two reads), and takes the observer's instead
// if one begun later comes first. The observer's
// last read may predate a pause recorded an instant before the win, so a
// leader elected while the queue is paused never starts a worker. Each
// value carries when its read began; an older read never replaces a
// newer one. A restart request (an id) is carried out once per leadership,
// and counts as done when it predates the term or no pool runs; the id is
// published in the member record. A reload that adds or removes queues
// replaces the set of runners: runSession starts the new ones and cancels
// the removed ones, which stop their workers and resign.
package supervisor
