package pgbackend

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/regentd/regent/election"

	"github.com/regentd/regent/internal/boottime"
)

// Reasons a leadership ends, wrapped in the errors its methods return.
var (
	errResigned     = errors.New("resigned")
	errLeaseExpired = errors.New("lease not renewed before its deadline")
	errRecordGone   = errors.New("leader record released or taken over")
)

// leadership is one held leadership. Its deadline timer closes Done at
// ValidUntil unless a renewal moved it, even while the actor is blocked
// in a statement.
type leadership struct {
	b     *Backend
	queue string
	key   int64
	term  int64

	done    chan struct{}
	renewed chan struct{}

	mu         sync.Mutex
	validUntil time.Time
	timer      *time.Timer
	lostErr    error
}

var _ election.Leadership = (*leadership)(nil)

func newLeadership(b *Backend, queue string, key, term int64, validUntil time.Time) *leadership {
	l := &leadership{
		b:          b,
		queue:      queue,
		key:        key,
		term:       term,
		done:       make(chan struct{}),
		renewed:    make(chan struct{}, 1),
		validUntil: validUntil,
	}
	l.mu.Lock()
	l.timer = time.AfterFunc(boottime.Until(validUntil), l.deadline)
	l.mu.Unlock()
	return l
}

// Queue is the queue led.
func (l *leadership) Queue() string { return l.queue }

// Term is the term of this leadership.
func (l *leadership) Term() int64 { return l.term }

// ValidUntil is the send time of the last successful renewal (or of the
// takeover) plus the lease TTL, on the monotonic clock.
func (l *leadership) ValidUntil() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.validUntil
}

// Renewed receives a value after each renewal that moved ValidUntil.
func (l *leadership) Renewed() <-chan struct{} { return l.renewed }

// Done is closed when the leadership is lost or resigned.
func (l *leadership) Done() <-chan struct{} { return l.done }

// err returns why the leadership ended, or nil while it holds.
func (l *leadership) err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lostErr
}

// extend moves the deadline to until if that is later. It returns false
// once the leadership is lost.
func (l *leadership) extend(until time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lostErr != nil {
		return false
	}
	if until.After(l.validUntil) {
		l.validUntil = until
		l.timer.Reset(boottime.Until(until))
		select {
		case l.renewed <- struct{}{}:
		default:
		}
	}
	return true
}

// lose ends the leadership with reason; only the first call counts.
func (l *leadership) lose(reason error) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.loseLocked(reason)
}

func (l *leadership) loseLocked(reason error) bool {
	if l.lostErr != nil {
		return false
	}
	l.lostErr = reason
	l.timer.Stop()
	close(l.done)
	return true
}

// deadline runs on the timer: past ValidUntil without a renewal the
// leadership must be assumed lost.
func (l *leadership) deadline() {
	l.mu.Lock()
	if l.lostErr != nil {
		l.mu.Unlock()
		return
	}
	if left := boottime.Until(l.validUntil); left > 0 {
		l.timer.Reset(left)
		l.mu.Unlock()
		return
	}
	lost := l.loseLocked(errLeaseExpired)
	l.mu.Unlock()
	if lost {
		l.b.log.Warn("leadership lost: lease not renewed in time", "queue", l.queue, "term", l.term)
		// Let the actor release the lock of a leadership it no longer has.
		l.b.act.kick()
	}
}

// Publish replaces the leader record's payload, if this leadership still
// holds it. Cancelling ctx stops waiting (the update may still happen).
func (l *leadership) Publish(ctx context.Context, payload []byte) error {
	if err := l.err(); err != nil {
		return fmt.Errorf("%w: queue %q term %d: %w", election.ErrNotLeader, l.queue, l.term, err)
	}
	payload = clone(payload)
	err := l.b.act.call(ctx, func(a *actor) error { return a.publish(l, payload) })
	if err != nil && !errors.Is(err, election.ErrNotLeader) && l.err() != nil {
		return fmt.Errorf("%w: queue %q term %d: %w", election.ErrNotLeader, l.queue, l.term, err)
	}
	return err
}

// Resign closes Done, then marks the record released, frees the queue's
// lock and wakes followers. It is idempotent; on a leadership already
// lost, and after the session ended or Close, it returns nil (the lock
// was freed). Cancelling ctx stops waiting, not the release: the actor
// runs it all the same (callAlways), and reconcile leaves the lock of a
// resigning leadership to it.
func (l *leadership) Resign(ctx context.Context) error {
	l.lose(errResigned)
	err := l.b.act.callAlways(ctx, func(a *actor) error { return a.resign(l) })
	if errors.Is(err, election.ErrSessionLost) || errors.Is(err, election.ErrClosed) {
		return nil
	}
	return err
}

// resigning reports whether l was given up by Resign, whose command the
// actor has not run yet if l is still its queue's lead.
func (l *leadership) resigning() bool {
	return errors.Is(l.err(), errResigned)
}

func clone(p []byte) []byte {
	if p == nil {
		return nil
	}
	return append([]byte{}, p...)
}
