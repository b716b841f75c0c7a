package main

import (
	"encoding/json"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/supervisor"
	"github.com/regentd/regent/worker"
)

// envGuardRelease carries the backend settings a worker guard needs to
// release its term after the supervisor died (see releaseTerm): the
// fallback guard reads it itself, the lean guard's `regent release-term`
// helper inherits it. It is removed from the worker's own environment by
// the guard.
const envGuardRelease = worker.GuardEnvPrefix + "RELEASE"

// guardReleaseConfig is what a guard needs to open the backend read-only.
type guardReleaseConfig struct {
	Backend  string                `json:"backend"`
	Cluster  string                `json:"cluster"`
	Etcd     config.EtcdConfig     `json:"etcd"`
	Postgres config.PostgresConfig `json:"postgres"`
}

// newPoolFactory runs each queue's workers under the guard binary g; the
// guards get the backend settings their term release needs.
func newPoolFactory(cfg *config.Config, g guardBinary, containment worker.Containment, reaper *worker.Reaper) supervisor.PoolFactory {
	rel, _ := json.Marshal(guardReleaseConfig{Backend: cfg.Backend, Cluster: cfg.Cluster, Etcd: cfg.Etcd, Postgres: cfg.Postgres})
	return supervisor.NewWorkerPools(supervisor.WorkerPools{
		Cluster: cfg.Cluster, Node: cfg.NodeID,
		GuardExe: g.spec.GuardExe, GuardFile: g.spec.GuardFile, GuardArgs: g.spec.GuardArgs, HelperFile: g.spec.HelperFile,
		Containment: containment,
		// The backstop acts before another replica may lead.
		BackstopGrace: cfg.FenceMargin / 2,
		GuardEnv:      []string{envGuardRelease + "=" + string(rel)},
		Reaper:        reaper,
	})
}
