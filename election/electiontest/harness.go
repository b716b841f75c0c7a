package electiontest

import (
	"testing"

	"github.com/regentd/regent/election"
)

// Harness adapts one backend implementation to the contract suite.
type Harness interface {
	// Name names the backend in test output ("etcd", "postgres").
	Name() string
	// New opens a backend for a fresh replica. The suite fills opts.Identity
	// with a unique cluster per test and unique node ids; the harness closes
	// the backend at the end of the test (Close is idempotent).
	New(t testing.TB, opts election.Options) election.Backend
	// KillSession ends b's session from outside, without b's cooperation:
	// etcd revokes its lease through another client; Postgres runs
	// pg_terminate_backend on its lock connection.
	KillSession(t testing.TB, b election.Backend)
	// CorruptLeader overwrites the stored leader record of (cluster, queue)
	// with undecodable data, bypassing the backend's API.
	CorruptLeader(t testing.TB, cluster, queue string)
	// Connections returns how many backend connections (Postgres: rows of
	// pg_stat_activity; etcd: leases) the replica node currently holds, or
	// -1 if the backend has no such notion.
	Connections(t testing.TB, cluster, node string) int
	// MaxConnections is the most connections Connections may report for one
	// replica, however many queues it leads (etcd: 1 lease; Postgres: 2).
	MaxConnections() int
	// HolderEnv returns the environment a helper process needs to open the
	// same backend (see HolderMain).
	HolderEnv(t testing.TB) []string
}
