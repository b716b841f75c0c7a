package etcdbackend

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/regentd/regent/election"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// translate turns an error of the etcd client into the error the backend
// returns for op (a short lowercase verb phrase: "read leader of q1").
// ctx is the caller's context: when it was cancelled, its error is
// returned as is. Unreachable-backend errors wrap election.ErrUnavailable;
// a missing lease wraps election.ErrSessionLost.
func (b *Backend) translate(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return ctx.Err()
	}
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		return fmt.Errorf("%w: %s: the lease is gone", election.ErrSessionLost, op)
	case errors.Is(err, rpctypes.ErrAuthFailed), errors.Is(err, rpctypes.ErrInvalidAuthToken),
		errors.Is(err, rpctypes.ErrUserEmpty), errors.Is(err, rpctypes.ErrUserNotFound):
		return fmt.Errorf("etcd at %s refused the credentials of user %q: %s: %w; check --etcd-username and --etcd-password", b.endpoints, b.cfg.Username, op, err)
	case errors.Is(err, rpctypes.ErrPermissionDenied):
		return fmt.Errorf("etcd at %s denied user %q: %s: %w; grant the user the role of what it does on %s (replicas: read-write; operator commands: read, and read-write on stepdown/, control/ and actions/; status: read; see deploy/etcd/roles.sh)", b.endpoints, b.cfg.Username, op, err, b.keys.root())
	case unreachable(err):
		if ctx.Err() != nil {
			return fmt.Errorf("%w: etcd at %s unreachable: %s: %w; check --etcd-endpoints", election.ErrUnavailable, b.endpoints, op, ctx.Err())
		}
		return fmt.Errorf("%w: etcd at %s unreachable: %s: %v; check --etcd-endpoints", election.ErrUnavailable, b.endpoints, op, err)
	}
	return fmt.Errorf("etcd: %s: %w", op, err)
}

// opErr is translate for the calls of the Backend's users: once the
// backend is closed every failure is election.ErrClosed.
func (b *Backend) opErr(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if b.ctx.Err() != nil {
		return fmt.Errorf("%w: %s", election.ErrClosed, op)
	}
	return b.translate(ctx, op, err)
}

// unreachable reports whether err means that etcd could not be reached or
// could not serve (no quorum, timeout) rather than that it refused.
func unreachable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	for _, e := range []error{rpctypes.ErrNoLeader, rpctypes.ErrTimeout, rpctypes.ErrTimeoutDueToLeaderFail,
		rpctypes.ErrTimeoutDueToConnectionLost, rpctypes.ErrLeaderChanged, rpctypes.ErrNotCapable,
		rpctypes.ErrUnhealthy, rpctypes.ErrTimeoutWaitAppliedIndex, rpctypes.ErrStopped} {
		if errors.Is(err, e) {
			return true
		}
	}
	var coded interface{ Code() codes.Code }
	code := codes.OK
	if errors.As(err, &coded) {
		code = coded.Code()
	} else if s, ok := status.FromError(err); ok {
		code = s.Code()
	}
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	return strings.Contains(err.Error(), "connection refused")
}
