package etcdbackend

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regentd/regent/election"
)

// DeploymentID returns the cluster's deployment id, creating it in one
// transaction if the key does not exist yet: of concurrent first callers,
// one creates it and the others read it. It works on a read-only backend
// too (a status on a fresh cluster creates it); once the id exists it
// only reads, so a user with read permission only gets it.
func (b *Backend) DeploymentID(ctx context.Context) (string, error) {
	octx, end, err := b.op(ctx, false)
	if err != nil {
		return "", err
	}
	defer end()
	rctx, cancel := b.request(octx)
	defer cancel()
	key := b.keys.deployment()
	// Read first: once the id exists, a user with read permission only
	// (a monitor's status) gets it; a transaction holding a put needs
	// write permission even when its compare fails.
	got, err := b.cli.Get(rctx, key)
	if err != nil {
		return "", b.opErr(rctx, "read deployment id", err)
	}
	if len(got.Kvs) > 0 {
		return checkDeploymentID(key, string(got.Kvs[0].Value))
	}
	id := election.NewDeploymentID()
	resp, err := b.cli.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, id)).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return "", b.opErr(rctx, "read deployment id", err)
	}
	if resp.Succeeded {
		b.log.Info("deployment id created", "deployment_id", id)
		return id, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return "", fmt.Errorf("etcdbackend: %s vanished while read: deployment keys are never deleted; check who deletes keys under %s", key, b.keys.root())
	}
	return checkDeploymentID(key, string(kvs[0].Value))
}

// checkDeploymentID returns got, the value of key, if it is a deployment id.
func checkDeploymentID(key, got string) (string, error) {
	if !election.ValidDeploymentID(got) {
		return "", fmt.Errorf("%w: %s holds %q, not a deployment id (16 hex digits); restore it from a backup, or delete the key to make this a new deployment", election.ErrCorruptRecord, key, clip(got))
	}
	return got, nil
}

// clip shortens a corrupt value for an error message.
func clip(s string) string {
	const max = 40
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
