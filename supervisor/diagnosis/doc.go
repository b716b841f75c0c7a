// Package diagnosis owns the cluster's records and what they mean: the
// payloads a leader writes in its leader record (LeaderPayload: version and
// published config) and a replica in its member record (MemberPayload: its
// role, config, conflicts and workers for each queue), and the one
// diagnosis of them that `regent status` (human, --json, --check), the
// /status endpoint, a replica's metrics (regent_config_conflicts,
// regent_split_brain, regent_stale_workers, regent_degraded) and its log
// reports (config_conflict, split_brain, stale_worker) all share.
//
// Rules:
//
//   - Pure. Diagnose is a function of a Snapshot of the records and of
//     the time, passed in: it reads no backend, no clock and nothing local,
//     so every observer of the same records finds the same problems. A
//     replica's own config enters only through Report.Conflicts, the same
//     rule the status document applies to every follower.
//   - Hostile input. Payloads come from other versions or other writers:
//     decoding returns errors, never panics. A leader record that cannot
//     be decoded is a critical corrupt_record (the leader is unknown, so
//     no_leader is not added); a decodable record whose payload cannot be
//     is a corrupt_record warning (only its config is unknown, so no
//     conflict can be found). A member record that cannot be decoded takes
//     no part.
//   - Conflicts are field by field (config.Diff), of every member listing
//     the queue that is not the leader record's node, against the leader's
//     published config.
//   - One grace (Grace): a claim to lead, or a live worker, of a term older
//     than the leader record's is tolerated for the leader's published
//     lease TTL plus one second after the new term began; the default lease
//     TTL stands in when the leader's is unknown.
//   - Split brain: two or more members claim one queue once the older
//     claims are past the grace (SplitBrain). Stale worker: a member lists
//     live workers of an older term than the leader record's, past the
//     grace. No leader: no leader record, and none corrupt.
//   - Severities: no_leader, split_brain, stale_worker, corrupt_record
//     (of a record) and foreign_owner are critical; config_conflict,
//     crash_loop, rss_loop, wedged, corrupt_record (of a payload or an
//     operator record), stale_write_rejected, fence_unreadable and
//     drained are warnings.
//   - The cluster (DiagnoseCluster): the live members (node, host, pid,
//     version, the HTTP address they listen on, drained) and the problems
//     of no single queue: one drained warning per drain record (whether
//     the node runs or not, and what it still leads), and an operator
//     record that cannot be decoded (corrupt_record, a warning). Every
//     leader and follower carries its config's generation
//     (config.Published.Generation).
//   - The fence (AddFence), when one is configured: the protected
//     resource's row for the queue's fence key and its recent refusals,
//     read by the caller, judged here against the caller's deployment.
//
// Imports flow one way: this package uses election (records) and config
// (published configs); supervisor and cmd use it.
package diagnosis
