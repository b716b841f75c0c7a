package election

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Backends translate driver errors into these at the
// boundary and wrap them with %w; callers test them with errors.Is. Which
// call returns which, in which case, is the contract told in doc.go.
var (
	// ErrNoLeader is returned by Leader and RequestStepDown when nobody
	// leads the queue.
	ErrNoLeader = errors.New("election: no leader")
	// ErrNotLeader is returned by Leadership.Publish once the leadership
	// is lost, resigned or closed.
	ErrNotLeader = errors.New("election: not leader")
	// ErrSessionLost is returned by every call of a read-write Backend
	// once its session has ended (lease expired or revoked, connection
	// killed): the Backend is spent, Close it and open another.
	ErrSessionLost = errors.New("election: session lost")
	// ErrClosed is returned by every call made after Close (but for
	// Campaign and SetMember on a read-only backend: ErrReadOnly).
	ErrClosed = errors.New("election: backend closed")
	// ErrReadOnly is returned at once by Campaign and SetMember on a
	// backend opened with Options.ReadOnly.
	ErrReadOnly = errors.New("election: backend is read-only")
	// ErrBusy is returned at once by Campaign while another Campaign call
	// of the same Backend for the same queue has not returned, or while a
	// leadership of that queue won through this Backend is not Done.
	ErrBusy = errors.New("election: campaign already running or leadership held for this queue")
	// ErrCorruptRecord wraps a record in the backend that cannot be decoded.
	ErrCorruptRecord = errors.New("election: corrupt record")
	// ErrUnsupportedPooler is returned when the Postgres connection goes
	// through a transaction-mode pooler, which breaks session advisory locks.
	ErrUnsupportedPooler = errors.New("election: transaction-mode pooler detected")
	// ErrUnavailable wraps a failure to reach the backend.
	ErrUnavailable = errors.New("election: backend unavailable")
)

// Reader is what every user of a backend may do: read and watch the
// cluster's records. A read-only backend never needs more than Operator.
type Reader interface {
	// Leader returns the current leader record of queue, or ErrNoLeader.
	Leader(ctx context.Context, queue string) (LeaderRecord, error)

	// Leaders returns the leader records of every led queue in the cluster.
	// A record that cannot be decoded is returned with Err set, never dropped
	// silently and never a panic.
	Leaders(ctx context.Context) ([]LeaderRecord, error)

	// Members returns the member records of every live replica in the cluster.
	Members(ctx context.Context) ([]MemberRecord, error)

	// StepDownRequest returns the pending step-down request of queue;
	// ok is false when there is none.
	StepDownRequest(ctx context.Context, queue string) (req StepDownRequest, ok bool, err error)

	// StepDownRequests returns every pending step-down request of the
	// cluster, in one read.
	StepDownRequests(ctx context.Context) ([]StepDownRequest, error)

	// History returns the last leadership terms of queue, newest first, at
	// most limit of them (the backend keeps at least HistoryKeep per queue
	// and trims older ones).
	History(ctx context.Context, queue string, limit int) ([]HistoryEntry, error)

	// Changes returns a channel that receives a value (non-blocking, size 1,
	// bursts collapse) whenever any leader, member or step-down record of
	// the cluster changes. The channel is closed when ctx is done, the
	// backend closes or (read-write) its session ends.
	Changes(ctx context.Context) <-chan struct{}

	// Done is closed when the session is lost or the backend is closed.
	// For a read-only backend it is closed only by Close.
	Done() <-chan struct{}

	// Close resigns every leadership held, ends the session (etcd: lease
	// revoke; Postgres: advisory unlock, release leases, close connection)
	// and releases resources. It is idempotent. ctx bounds the cleanup.
	Close(ctx context.Context) error
}

// Operator adds to Reader the writes of operators and worker guards:
// everything a read-only backend can do.
type Operator interface {
	Reader

	// RequestStepDown asks the current leader of queue to resign gracefully.
	// If to is not empty, replicas other than node to hold back their
	// candidacy for a short while so that to wins. ErrNoLeader if nobody
	// leads.
	RequestStepDown(ctx context.Context, queue, to string) error

	// ReleaseTerm clears the leader record of queue if, and only if, it still
	// holds term, and wakes followers; it returns nil as well when the
	// queue no longer holds term. A worker guard calls it after the
	// supervisor that led has died and every worker of that term is dead,
	// so that followers need not wait out the lease.
	ReleaseTerm(ctx context.Context, queue string, term int64) error

	// DeploymentID returns the cluster's deployment id: a random id the
	// first caller creates, once, in the backend, and every later caller
	// (on any replica, after any restart) reads. It lives as long as the
	// backend's data: a snapshot restore keeps it, a rebuilt backend gets
	// a new one. It names the deployment at the protected resource (the
	// fence's owner is "<cluster>/<deployment id>"). A stored id that is
	// not one wraps ErrCorruptRecord.
	DeploymentID(ctx context.Context) (string, error)

	// PutControl creates or replaces the operator record (kind, name) of
	// the cluster: a pause of a queue, a drain of a node, a restart
	// request. value is opaque to the backend. It outlives every session
	// (no lease) until DeleteControl, and wakes Changes.
	PutControl(ctx context.Context, kind, name string, value []byte) error

	// DeleteControl removes the operator record (kind, name); nil when
	// there is none. It wakes Changes.
	DeleteControl(ctx context.Context, kind, name string) error

	// Controls returns every operator record of the cluster, sorted by
	// kind then name.
	Controls(ctx context.Context) ([]Control, error)

	// RecordAction appends a to the cluster's log of operator actions
	// (the backend keeps at least ActionsKeep and trims older ones).
	RecordAction(ctx context.Context, a Action) error

	// Actions returns the last operator actions of the cluster, newest
	// first, at most limit of them.
	Actions(ctx context.Context, limit int) ([]Action, error)
}

// Control is one operator record of a cluster (see Operator.PutControl).
type Control struct {
	// Kind says what the record is ("pause", "drain", "restart").
	Kind string
	// Name is what it applies to: a queue or a node.
	Name string
	// Value is the record, opaque to the backend.
	Value []byte
}

// Action is one entry of the operator log: who did what to which queue
// or node, when and why.
type Action struct {
	At     time.Time `json:"at"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	By     string    `json:"by"`
	Reason string    `json:"reason,omitempty"`
}

// DecodeAction decodes an operator log entry as a backend stores it (the
// JSON form of Action). An entry that cannot be decoded becomes action
// "corrupt_record", with the error as its reason: never dropped.
func DecodeAction(b []byte) Action {
	var a Action
	if err := json.Unmarshal(b, &a); err != nil || a.Action == "" {
		if err == nil {
			err = errors.New("no action")
		}
		return Action{Action: "corrupt_record", Reason: fmt.Sprintf("%v: %v", ErrCorruptRecord, err)}
	}
	return a
}

// ActionsKeep is how many operator actions per cluster a backend keeps at
// least.
const ActionsKeep = 200

// NewDeploymentID returns a fresh random deployment id: 16 lower-case hex
// digits.
func NewDeploymentID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("election: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

// ValidDeploymentID reports whether id has the form NewDeploymentID
// gives: 16 lower-case hex digits.
func ValidDeploymentID(id string) bool {
	if len(id) != 16 {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Campaigner is what only a read-write backend does: campaign, and
// publish this replica's member record. Both fail at once with ErrReadOnly
// on a read-only backend.
type Campaigner interface {
	// Campaign blocks until this replica leads queue, then publishes payload
	// as the leader record's payload and returns the leadership. It returns
	// ctx.Err() if ctx is cancelled first, ErrSessionLost if the session
	// ends, ErrClosed after Close, ErrReadOnly on a read-only backend, and
	// ErrBusy at once while another Campaign of this Backend for queue
	// runs or while this Backend's leadership of queue is not Done.
	// Followers are woken by the backend (etcd watch, Postgres NOTIFY)
	// when the leader resigns.
	//
	// Campaign never returns a leadership while another replica's lease for
	// the queue might still be trusted by that replica: after an unclean
	// loss it waits out the old lease on this replica's own clock.
	Campaign(ctx context.Context, queue string, payload []byte) (Leadership, error)

	// SetMember publishes (creates or replaces) this replica's member record
	// with the given role and payload. It disappears when the session ends.
	SetMember(ctx context.Context, role string, payload []byte) error
}

// Backend is one replica's connection to an election backend: one session
// (an etcd lease, or one dedicated Postgres connection) shared by every queue
// the replica campaigns for. A Backend is safe for concurrent use. Opened
// with Options.ReadOnly it has no session, and only its Operator methods
// work. Every case of every call is told in the package documentation
// (doc.go).
//
// The backend stores and watches records; it knows nothing of processes or
// of the supervisor's algorithm.
type Backend interface {
	Operator
	Campaigner
}

// Leadership is one held leadership of one queue.
type Leadership interface {
	// Queue is the queue led.
	Queue() string
	// Term strictly increases with every new leadership of the queue, on
	// whichever replica; it equals the Term of the leader record.
	Term() int64
	// ValidUntil is the local instant (internal/boottime: it counts host
	// suspend) until which no other replica can become leader: the send
	// time of the last successful renewal plus the lease TTL. Callers
	// subtract their own safety margin and stop trusting the leadership
	// past it, whether Done is closed yet or not. Once the leadership is
	// Done it no longer moves.
	ValidUntil() time.Time
	// Renewed receives a value (size 1, bursts collapse) after each
	// successful renewal that moved ValidUntil. It is never closed.
	Renewed() <-chan struct{}
	// Done is closed the moment the backend knows or must assume that the
	// leadership is lost (record deleted or taken, session ended, connection
	// killed, ValidUntil passed without a renewal), when Resign starts and
	// before Close returns.
	Done() <-chan struct{}
	// Publish replaces the leader record's payload. Once Done is closed,
	// whatever the reason, it returns ErrNotLeader.
	Publish(ctx context.Context, payload []byte) error
	// Resign gives up leadership cleanly and wakes followers at once; call
	// it only once the leader's work has stopped. Done is closed before it
	// returns. It is idempotent, and returns nil on a leadership already
	// lost, resigned or closed: it never touches a later term. An error
	// means the clean release could not be confirmed; followers then wait
	// out the lease at worst.
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
	// ReadOnly opens no session: Campaign and SetMember fail with
	// ErrReadOnly; the Operator calls work (status, step-down, guards).
	ReadOnly bool
}
