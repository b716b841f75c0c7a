package etcdbackend

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/regentd/regent/election"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// SetMember creates or replaces this replica's member record, attached to
// the session lease: it disappears when the session ends. The record is
// written only when SetMember is called, never on renewals; readers fill
// LastSeen from the lease. It returns election.ErrReadOnly on a read-only backend
// and an error wrapping election.ErrSessionLost once the session is lost.
// ctx bounds the request (DialTimeout when it has no deadline).
func (b *Backend) SetMember(ctx context.Context, role string, payload []byte) error {
	if b.opts.ReadOnly {
		return fmt.Errorf("%w: set member record", election.ErrReadOnly)
	}
	if role == "" {
		return errors.New("etcd: set member record: role is empty")
	}
	octx, end, err := b.op(ctx, true)
	if err != nil {
		return err
	}
	defer end()
	if b.sessionLost() {
		return fmt.Errorf("%w: set member record", election.ErrSessionLost)
	}
	rctx, cancel := b.request(octx)
	defer cancel()
	val := mustJSON(memberValue{
		Host: b.opts.Host, PID: b.opts.PID, Role: role, LastSeen: time.Now().UTC().Round(0), Payload: payload,
	})
	if _, err := b.cli.Put(rctx, b.keys.member(b.opts.Node), val, clientv3.WithLease(b.lease)); err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			b.loseSession("etcd no longer knows the lease")
		}
		if b.sessionLost() {
			return fmt.Errorf("%w: set member record", election.ErrSessionLost)
		}
		return b.opErr(rctx, "set member record", err)
	}
	b.mu.Lock()
	b.memberSet = true
	b.mu.Unlock()
	return nil
}
