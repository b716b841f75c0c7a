// Package etcdserver runs an embedded etcd member inside the current
// process. It backs `regent dev` (a single-member etcd for trying regent on
// one machine) and the test environment (internal/testenv runs it in a
// separate helper process, so that tests can kill and restart it).
//
// Invariants:
//
//   - Start returns only once the member is ready to serve clients, or with
//     an error after releasing everything it started (listeners, data dir
//     lock, goroutines).
//   - A Server has one owner, who calls Stop exactly when it is done with it;
//     Stop is idempotent and blocks until every goroutine of the member has
//     ended. Err is closed once Stop has finished.
//   - etcd's own logging goes through the given hclog logger at warn level
//     and above, with snake_case keys; nothing is printed otherwise.
//   - A client or peer URL with port 0 binds a free port; Endpoints reports
//     the bound client addresses, so callers never guess ports.
package etcdserver
