// Package testenv provides real servers to tests: an etcd member and a
// PostgreSQL 15 server shared by every test of one test binary, private ones
// a test may stop, kill and restart, throwaway Postgres databases, and
// PgBouncer in front of a Postgres server. A private multi-member etcd
// cluster (NewEtcdCluster: one helper process per member, fixed loopback
// client and peer ports, members killed, stopped and restarted one by one
// or together, the raft leader found with Leader) and restarts of a
// private Postgres server in fast or immediate shutdown mode (RestartWith)
// serve fault-injection tests, as do steps of a private Postgres server's
// wall clock (PostgresOptions.FakeClock, StepClock: libfaketime preloaded
// into that server only; the machine's clock is never changed).
//
// A package that uses it wraps its tests with Main:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// Invariants:
//
//   - Every server runs as a separate process, started lazily by the first
//     test that asks for it, on loopback ports the kernel chose free and in
//     a fresh temporary directory: two test binaries, or two runs on one
//     machine, never share a port or a directory.
//   - etcd runs in a re-executed copy of the test binary (Main turns such a
//     process into the helper instead of running tests). It stops when its
//     stdin reaches EOF, so it dies with the test binary even when that is
//     killed; Postgres and PgBouncer get SIGQUIT/SIGTERM from the kernel
//     when the test binary dies (parent-death signal).
//   - Shared servers are stopped by Main after the tests; private ones by
//     the test's Cleanup, even when the test fails. Their directories are
//     removed with them; those of a test binary that was killed are removed
//     when a later one starts a server (each names its owner's pid).
//   - Readiness is awaited by polling the server (a client round trip) up
//     to a deadline, never by sleeping a fixed time. A server that cannot
//     start fails the test (t.Fatal); nothing is skipped, but a server
//     with FakeClock on a machine without libfaketime outside CI.
//   - REGENT_TEST_ETCD_ENDPOINTS and REGENT_TEST_POSTGRES_URL, when set,
//     replace the shared servers by external ones (private servers are
//     always started locally).
//   - When running as root, Postgres and PgBouncer run as the "postgres"
//     user, which owns their directories.
package testenv
