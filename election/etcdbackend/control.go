package etcdbackend

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/regentd/regent/election"
)

// PutControl writes the operator record (kind, name), without a lease.
func (b *Backend) PutControl(ctx context.Context, kind, name string, value []byte) error {
	if err := validControl(kind, name); err != nil {
		return err
	}
	octx, end, err := b.op(ctx, false)
	if err != nil {
		return err
	}
	defer end()
	rctx, cancel := b.request(octx)
	defer cancel()
	if _, err := b.cli.Put(rctx, b.keys.control(kind, name), string(value)); err != nil {
		return b.opErr(rctx, "write "+kind+" "+name, err)
	}
	return nil
}

// DeleteControl deletes the operator record (kind, name), if any.
func (b *Backend) DeleteControl(ctx context.Context, kind, name string) error {
	if err := validControl(kind, name); err != nil {
		return err
	}
	octx, end, err := b.op(ctx, false)
	if err != nil {
		return err
	}
	defer end()
	rctx, cancel := b.request(octx)
	defer cancel()
	if _, err := b.cli.Delete(rctx, b.keys.control(kind, name)); err != nil {
		return b.opErr(rctx, "delete "+kind+" "+name, err)
	}
	return nil
}

// Controls reads every operator record of the cluster in one range. A
// key that does not have the form control/<kind>/<name> is skipped.
func (b *Backend) Controls(ctx context.Context) ([]election.Control, error) {
	octx, end, err := b.op(ctx, false)
	if err != nil {
		return nil, err
	}
	defer end()
	rctx, cancel := b.request(octx)
	defer cancel()
	resp, err := b.cli.Get(rctx, b.keys.controls(), clientv3.WithPrefix())
	if err != nil {
		return nil, b.opErr(rctx, "read operator records", err)
	}
	out := make([]election.Control, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		kind, name, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), b.keys.controls()), "/")
		if !ok || kind == "" || name == "" || strings.Contains(name, "/") {
			continue
		}
		out = append(out, election.Control{Kind: kind, Name: name, Value: kv.Value})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// actionsSlack is how many entries beyond election.ActionsKeep the log
// may hold before RecordAction trims it, so that it trims in batches.
const actionsSlack = 50

// RecordAction appends a to the operator log under a fresh key; the
// entries' CreateRevision orders them. The log is trimmed to
// election.ActionsKeep once it holds actionsSlack more.
func (b *Backend) RecordAction(ctx context.Context, a election.Action) error {
	value, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("etcd: encode action: %w", err)
	}
	octx, end, err := b.op(ctx, false)
	if err != nil {
		return err
	}
	defer end()
	rctx, cancel := b.request(octx)
	defer cancel()
	if _, err := b.cli.Put(rctx, b.keys.actions()+election.NewDeploymentID(), string(value)); err != nil {
		return b.opErr(rctx, "record action", err)
	}
	count, err := b.cli.Get(rctx, b.keys.actions(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || count.Count <= election.ActionsKeep+actionsSlack {
		return nil // trimming is best effort
	}
	old, err := b.cli.Get(rctx, b.keys.actions(), clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(count.Count-election.ActionsKeep))
	if err != nil {
		return nil
	}
	for _, kv := range old.Kvs {
		if _, err := b.cli.Delete(rctx, string(kv.Key)); err != nil {
			return nil
		}
	}
	return nil
}

// Actions reads the newest limit entries of the operator log. An entry
// that cannot be decoded is returned as action "corrupt_record", its
// reason the error, never dropped.
func (b *Backend) Actions(ctx context.Context, limit int) ([]election.Action, error) {
	if limit <= 0 {
		return nil, nil
	}
	octx, end, err := b.op(ctx, false)
	if err != nil {
		return nil, err
	}
	defer end()
	rctx, cancel := b.request(octx)
	defer cancel()
	resp, err := b.cli.Get(rctx, b.keys.actions(), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend), clientv3.WithLimit(int64(limit)))
	if err != nil {
		return nil, b.opErr(rctx, "read actions", err)
	}
	out := make([]election.Action, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, election.DecodeAction(kv.Value))
	}
	return out, nil
}

// validControl checks the parts of an operator record's key.
func validControl(kind, name string) error {
	if err := validName("control kind", kind); err != nil {
		return err
	}
	return validName("control name", name)
}
