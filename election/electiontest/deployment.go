package electiontest

import (
	"sync"

	"github.com/regentd/regent/election"
)

// testDeploymentID checks that a cluster has one deployment id: created
// by the first of concurrent callers (replicas and a read-only backend
// alike), the same for every later caller and after a replica's restart,
// and another for another cluster.
func testDeploymentID(e *env) {
	t := e.t
	ctx := e.ctx()
	backends := []election.Backend{e.replica("a"), e.replica("b"), e.reader()}
	ids := make([]string, len(backends))
	errs := make([]error, len(backends))
	var wg sync.WaitGroup
	for i, b := range backends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], errs[i] = b.DeploymentID(ctx)
		}()
	}
	wg.Wait()
	for i := range backends {
		if errs[i] != nil {
			t.Fatalf("DeploymentID of backend %d: %v", i, errs[i])
		}
		if !election.ValidDeploymentID(ids[i]) {
			t.Fatalf("DeploymentID of backend %d is %q, not 16 hex digits", i, ids[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("concurrent first calls gave different ids: %q", ids)
		}
	}

	closeCtx := e.ctx()
	if err := backends[0].Close(closeCtx); err != nil {
		t.Fatalf("close a: %v", err)
	}
	again := e.replica("a")
	if id, err := again.DeploymentID(ctx); err != nil || id != ids[0] {
		t.Errorf("after a restart: DeploymentID %q, %v; want %q", id, err, ids[0])
	}

	other := &env{t: t, h: e.h, cluster: e.cluster + "-x"}
	if id, err := other.replica("a").DeploymentID(ctx); err != nil || id == ids[0] || !election.ValidDeploymentID(id) {
		t.Errorf("another cluster: DeploymentID %q, %v; want a new id, not %q", id, err, ids[0])
	}
}
