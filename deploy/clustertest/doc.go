// Package clustertest is the end-to-end test of regent's local cluster
// (docker-compose.yml) on the real Docker engine: `make cluster-test`
// runs it with the build tag clustertest, so `go test ./...` never starts
// a container.
//
// For each backend (etcd, then PostgreSQL) the test brings the compose
// project up under a unique name, and checks in order: one leader per
// queue and `regent status --check` OK; `docker kill` of a queue's leader
// container gives a new leader within the bound; `docker network
// disconnect` of the new leader from the backend network gives another
// takeover, and after `docker network connect` the cut replica rejoins as a
// follower; the killed replica, started again, rejoins as a follower. The
// judge of safety is the observer log that the sample workers of every
// replica append to on a shared volume: workers of two terms of a queue
// never ran at the same instant, from the workers' own timestamps (every
// container reads the same kernel clock). The takeover times are measured
// from the same log.
//
// Invariants:
//
//   - Every compose project the test creates is torn down (`down -v`) in
//     a cleanup that runs on failure too, and the test fails if any
//     container, network or volume of the project remains; deploy/cluster.sh
//     sweeps the same projects again after the test binary exits.
//   - Only loopback and the project's own containers are reached: HTTP
//     ports are published on 127.0.0.1 at ports the engine picks.
//   - Waits poll a condition with a deadline; nothing sleeps for a fixed time
//     in place of a condition.
//
// The untagged part of the package (demolog.go) parses the sample worker's
// lines; its unit test runs with the rest of `go test ./...`.
package clustertest
