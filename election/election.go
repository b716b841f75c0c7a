package election

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Backends translate driver errors into these at the
// boundary and wrap them with %w; callers test them with errors.Is.
var (
	// ErrNoLeader is returned by Leader when nobody leads the queue.
	ErrNoLeader = errors.New("election: no leader")
	// ErrNotLeader is returned by Leadership methods once leadership is lost.
	ErrNotLeader = errors.New("election: not leader")
	// ErrSessionLost is returned once the replica's backend session has ended
	// (lease expired or revoked, connection killed).
	ErrSessionLost = errors.New("election: session lost")
	// ErrClosed is returned by calls made after Close.
	ErrClosed = errors.New("election: backend closed")
	// ErrCorruptRecord wraps a record in the backend that cannot be decoded.
	ErrCorruptRecord = errors.New("election: corrupt record")
	// ErrUnsupportedPooler is returned when the Postgres connection goes
	// through a transaction-mode pooler, which breaks session advisory locks.
	ErrUnsupportedPooler = errors.New("election: transaction-mode pooler detected")
	// ErrUnavailable wraps a failure to reach the backend.
	ErrUnavailable = errors.New("election: backend unavailable")
)

// Backend is one replica's connection to an election backend: one session
// (an etcd lease, or one dedicated Postgres connection) shared by every queue
// the replica campaigns for. A Backend is safe for concurrent use.
//
// The backend stores and watches records; it knows nothing of processes or
// of the supervisor's algorithm.
type Backend interface {
	// Campaign blocks until this replica leads queue, then publishes payload
	// as the leader record's payload and returns the leadership. It returns
	// ctx.Err() if ctx is cancelled first, ErrSessionLost if the session
	// ends, ErrClosed after Close. Followers are woken by the backend (etcd
	// watch, Postgres NOTIFY) when the leader resigns.
	//
	// Campaign never returns a leadership while another replica's lease for
	// the queue might still be trusted by that replica: after an unclean
	// loss it waits out the old lease on the backend's clock.
	Campaign(ctx context.Context, queue string, payload []byte) (Leadership, error)

	// Leader returns the current leader record of queue, or ErrNoLeader.
	Leader(ctx context.Context, queue string) (LeaderRecord, error)

	// Leaders returns the leader records of every led queue in the cluster.
	// A record that cannot be decoded is returned with Err set, never dropped
	// silently and never a panic.
	Leaders(ctx context.Context) ([]LeaderRecord, error)

	// SetMember publishes (creates or replaces) this replica's member record
	// with the given role and payload. It disappears when the session ends.
	SetMember(ctx context.Context, role string, payload []byte) error

	// Members returns the member records of every live replica in the cluster.
	Members(ctx context.Context) ([]MemberRecord, error)

	// Changes returns a channel that receives a value (non-blocking, size 1,
	// bursts collapse) whenever any leader or member record of the cluster
	// changes. The channel is closed when ctx is done or the backend closes.
	Changes(ctx context.Context) <-chan struct{}

	// RequestStepDown asks the current leader of queue to resign gracefully.
	// If to is not empty, replicas other than node to hold back their
	// candidacy for a short while so that to wins. ErrNoLeader if nobody
	// leads. Works on a read-only backend.
	RequestStepDown(ctx context.Context, queue, to string) error

	// StepDownRequest returns the pending step-down request of queue;
	// ok is false when there is none.
	StepDownRequest(ctx context.Context, queue string) (req StepDownRequest, ok bool, err error)

	// StepDownRequests returns every pending step-down request of the
	// cluster, in one read. Works on a read-only backend.
	StepDownRequests(ctx context.Context) ([]StepDownRequest, error)

	// ReleaseTerm clears the leader record of queue if, and only if, it still
	// holds term, and wakes followers. A worker guard calls it after the
	// supervisor that led has died and every worker of that term is dead,
	// so that followers need not wait out the lease. Works on a read-only
	// backend.
	ReleaseTerm(ctx context.Context, queue string, term int64) error

	// History returns the last leadership terms of queue, newest first, at
	// most limit of them (the backend keeps at least HistoryKeep per queue
	// and trims older ones). Works on a read-only backend.
	History(ctx context.Context, queue string, limit int) ([]HistoryEntry, error)

	// Done is closed when the session is lost or the backend is closed.
	// For a read-only backend it is closed only by Close.
	Done() <-chan struct{}

	// Close resigns every leadership held, ends the session (etcd: lease
	// revoke; Postgres: advisory unlock, release leases, close connection)
	// and releases resources. It is idempotent. ctx bounds the cleanup.
	Close(ctx context.Context) error
}

// Leadership is one held leadership of one queue.
type Leadership interface {
	// Queue is the queue led.
	Queue() string
	// Term strictly increases with every new leadership of the queue.
	Term() int64
	// ValidUntil is the local monotonic instant until which no other replica
	// can become leader: the send time of the last successful renewal plus
	// the lease TTL. Callers subtract their own safety margin.
	ValidUntil() time.Time
	// Renewed receives a value (size 1, bursts collapse) after each
	// successful renewal that moved ValidUntil.
	Renewed() <-chan struct{}
	// Done is closed the moment the backend knows or must assume that the
	// leadership is lost (record deleted or taken, session ended, connection
	// killed), or after Resign.
	Done() <-chan struct{}
	// Publish replaces the leader record's payload. ErrNotLeader if lost.
	Publish(ctx context.Context, payload []byte) error
	// Resign gives up leadership cleanly and wakes followers at once.
	// It is idempotent.
	Resign(ctx context.Context) error
}

// LeaderRecord is the published record of a queue's leader.
type LeaderRecord struct {
	Cluster   string    `json:"cluster"`
	Queue     string    `json:"queue"`
	Node      string    `json:"node"`
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	Term      int64     `json:"term"`
	ElectedAt time.Time `json:"elected_at"`
	RenewedAt time.Time `json:"renewed_at,omitempty"`
	// Payload is opaque to the backend (the leader's published config).
	Payload []byte `json:"payload,omitempty"`
	// Err is set when the stored record could not be decoded
	// (wraps ErrCorruptRecord).
	Err error `json:"-"`
}

// MemberRecord is the published record of one live replica.
type MemberRecord struct {
	Cluster  string    `json:"cluster"`
	Node     string    `json:"node"`
	Host     string    `json:"host"`
	PID      int       `json:"pid"`
	Role     string    `json:"role"`
	LastSeen time.Time `json:"last_seen"`
	Payload  []byte    `json:"payload,omitempty"`
	// Err is set when the stored record could not be decoded.
	Err error `json:"-"`
}

// StepDownRequest is a pending request that a queue's leader resign.
type StepDownRequest struct {
	Queue string `json:"queue"`
	// To is the node asked to take over, or empty for any.
	To string `json:"to,omitempty"`
	// Term is the term that was asked to step down.
	Term        int64     `json:"term"`
	RequestedAt time.Time `json:"requested_at"`
}

// HistoryKeep is how many past terms per queue a backend keeps at least.
const HistoryKeep = 20

// Reasons a term ended, in HistoryEntry.EndReason.
const (
	// EndResign: the leader resigned cleanly (stop, step-down).
	EndResign = "resign"
	// EndReleased: a worker guard released the term after the leader's
	// supervisor died and its workers were dead.
	EndReleased = "released"
	// EndExpiry: the lease expired without renewal (leader frozen, cut
	// off or dead).
	EndExpiry = "expiry"
	// EndLost: the session was ended from outside (lease revoked, session
	// terminated, record deleted) before the lease expired.
	EndLost = "lost"
)

// HistoryEntry is one leadership term of a queue.
type HistoryEntry struct {
	Queue string    `json:"queue"`
	Term  int64     `json:"term"`
	Node  string    `json:"node"`
	Host  string    `json:"host"`
	From  time.Time `json:"from"`
	// To is when the term ended; zero while it lasts (or if unknown).
	To time.Time `json:"to,omitempty"`
	// EndReason is one of EndResign, EndReleased, EndExpiry, EndLost, or
	// empty while the term lasts.
	EndReason string `json:"end_reason,omitempty"`
}

// Role values of member records.
const (
	RoleLeader   = "leader"
	RoleFollower = "follower"
)

// Identity names the replica that owns a Backend.
type Identity struct {
	Cluster string
	Node    string
	Host    string
	PID     int
}

// Options common to every backend.
type Options struct {
	Identity
	// Timing is the lease timing (see its fields for what each backend
	// uses). A backend's New fills the zero fields with their defaults
	// (Timing.WithDefaults) and refuses a Timing that Validate refuses.
	Timing
	// ReadOnly opens no session: Campaign and SetMember fail; records can
	// be read and watched (for status, step-down and guards).
	ReadOnly bool
}
