package pgbackend

import (
	"errors"
	"fmt"
	"time"

	"github.com/regentd/regent/election"
)

// Defaults applied by New to zero fields of Config (those of the lease
// timing are election.Timing's), and the notification channels.
const (
	// DefaultDialTimeout bounds connecting to Postgres (TCP, TLS, startup).
	DefaultDialTimeout = 5 * time.Second
	// DefaultStatementTimeout bounds every statement regent runs.
	DefaultStatementTimeout = 5 * time.Second
	// NotifyChannel is the LISTEN/NOTIFY channel every record change is
	// announced on. Its payload is a small JSON object naming the cluster,
	// the queue and the kind of change.
	NotifyChannel = "regent"
	// RenewalChannel is the LISTEN/NOTIFY channel every write of a lock
	// session's lease (a renewal, a takeover) is announced on, so that
	// followers date the renewals they see on their own clock. Its
	// payload names the cluster, the session's server pid and the new
	// version of its lease row. Read-only backends do not listen.
	RenewalChannel = "regent_renewal"
)

// Config is how to reach Postgres. TLS and authentication settings
// (sslmode, sslrootcert, passfile...) come from the URL.
type Config struct {
	// URL is a libpq connection string or postgres:// URL. It must point at
	// Postgres itself or at a session-mode pool, never at a
	// transaction-mode pooler.
	URL string
	// DialTimeout bounds connecting (TCP, TLS, startup); New fails within it
	// when the server is unreachable. Default DefaultDialTimeout.
	DialTimeout time.Duration
	// StatementTimeout bounds every statement, on the server
	// (statement_timeout) and on the client (a statement that gets no
	// answer in time ends the session). It does not bound the wait for
	// notifications between statements. Default DefaultStatementTimeout.
	StatementTimeout time.Duration
}

// settings is Config and election.Options after defaults and validation,
// plus the values derived from them.
type settings struct {
	Config
	election.Options
	// clientStatementTimeout is the client-side bound of one statement:
	// a little longer than the server's, so that the server's own timeout
	// (which leaves the session usable) normally fires first.
	clientStatementTimeout time.Duration
	// staleGrace is Options.StaleGrace: how far past its expiry a lease
	// must be before a follower ends the session that still holds the
	// queue's lock. By default TTL/20, at least 100ms, at most 1s (it was
	// TTL/10 up to 2s; election.DefaultStaleGrace).
	//
	// The grace is not what makes ending the session safe:
	//
	//   - Ending the session only frees the lock. The takeover statement
	//     still requires the lease to have expired on the server's clock,
	//     and to be the version the follower waited out on its own clock,
	//     in the transaction that increments the term (sqlTakeover),
	//     exactly as when the server frees a dead leader's lock by itself,
	//     where no grace applies at all.
	//   - The old leader's ValidUntil is the send time of its last
	//     successful renewal plus the TTL, before the server's now() + TTL
	//     that the renewal wrote: its trust window ends before the
	//     server-side expiry, up to the difference of the two clocks' rates
	//     over one TTL (ppm, so microseconds). Its worker guards kill the
	//     workers at ValidUntil minus the supervisor's fence margin, even
	//     if the supervisor is frozen, so the workers are gone a fence
	//     margin before the expiry, whatever the grace.
	//   - A renewal still in flight when the lease was judged stale either
	//     fails with the session, or moved the lease, which the takeover
	//     then waits out; ending the session only ends the old leadership
	//     sooner.
	//
	// What the grace buys is politeness: a live replica whose deadline
	// passed (it has then lost every leadership of that session, which
	// share the session's lease) frees its locks itself at its deadline, a
	// little before the expiry; the grace leaves it time to do so, for
	// example when a statement of its own is slow, before its session is
	// ended. A twentieth of the TTL is ample for that and keeps failover
	// after a frozen or cut-off leader (expiry + grace) within the TTL + 1s
	// target; the cap keeps it there for long TTLs.
	staleGrace time.Duration
	// stepDownHold is Options.StepDownHold: how long other replicas hold
	// back after a step-down request naming a successor.
	stepDownHold time.Duration
	// keepalive holds the TCP keepalive settings of both ends.
	keepalive keepalive
}

func newSettings(cfg Config, opts election.Options) (settings, error) {
	s := settings{Config: cfg, Options: opts}
	if s.URL == "" {
		return s, errors.New("pgbackend: empty postgres URL")
	}
	if s.Cluster == "" {
		return s, errors.New("pgbackend: empty cluster")
	}
	if !s.ReadOnly && s.Node == "" {
		return s, errors.New("pgbackend: empty node id")
	}
	if s.DialTimeout <= 0 {
		s.DialTimeout = DefaultDialTimeout
	}
	if s.StatementTimeout <= 0 {
		s.StatementTimeout = DefaultStatementTimeout
	}
	s.Timing = s.Timing.WithDefaults()
	if err := s.Timing.Validate(); err != nil {
		return s, fmt.Errorf("pgbackend: %w", err)
	}
	s.clientStatementTimeout = s.StatementTimeout + max(s.StatementTimeout/4, 250*time.Millisecond)
	s.staleGrace = s.StaleGrace
	s.stepDownHold = s.StepDownHold
	s.keepalive = keepaliveFor(s.LeaseTTL)
	return s, nil
}
