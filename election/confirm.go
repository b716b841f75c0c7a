package election

import "time"

// SessionConfirmer is implemented by a read-write Backend whose session
// can be unconfirmed while it is not yet lost: the etcd backend keeps its
// session (the lease) while etcd does not answer, until etcd says the
// lease is gone, which a replica cut off from etcd only hears once it
// reaches etcd again. A health check asks SessionConfirmed instead of
// trusting Done alone. A Backend that does not implement it (Postgres:
// its session is its connection, and Done closes when that connection is
// found dead) is confirmed while Done is open.
type SessionConfirmer interface {
	// SessionConfirmed reports whether the server confirmed the session
	// recently: the last successful renewal was sent less than
	// ConfirmWindow ago (on the local monotonic clock). It is false
	// once the session is lost or the backend closed, and on a read-only
	// backend, which has no session.
	SessionConfirmed() bool
}

// ConfirmWindow is how old the last successful renewal of a session may
// be while the session still counts as confirmed (SessionConfirmer): two
// renew intervals. A renewal is due one interval after the last one was
// sent; the second interval gives it time to be answered, and a failed one
// is retried several times within it. So a replica cut off from its
// backend reports an unconfirmed session between one and two renew
// intervals after the cut (0.8 s at most with a 2 s TTL, 4 s with the
// default 10 s), well before its leadership's ValidUntil (one TTL after
// the last renewal sent, the TTL being at least three renew intervals).
func (t Timing) ConfirmWindow() time.Duration {
	return 2 * t.WithDefaults().RenewInterval
}
