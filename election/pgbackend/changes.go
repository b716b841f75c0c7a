package pgbackend

import (
	"context"
	"sync"
)

// subscribers fans change signals out to Changes channels. Sends never
// block: each channel has room for one signal and bursts collapse.
type subscribers struct {
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
	ch   chan struct{}
	stop func() bool
}

func newSubscribers() *subscribers {
	return &subscribers{subs: make(map[*subscriber]struct{})}
}

// add registers a channel that is closed when ctx is done or closeAll runs.
func (s *subscribers) add(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || ctx.Err() != nil {
		close(ch)
		return ch
	}
	sub := &subscriber{ch: ch}
	s.subs[sub] = struct{}{}
	sub.stop = context.AfterFunc(ctx, func() { s.remove(sub) })
	return ch
}

func (s *subscribers) remove(sub *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.subs[sub]; ok {
		delete(s.subs, sub)
		close(sub.ch)
	}
}

// notify signals every channel without blocking.
func (s *subscribers) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sub := range s.subs {
		select {
		case sub.ch <- struct{}{}:
		default:
		}
	}
}

// closeAll closes every channel; later add calls get a closed channel.
func (s *subscribers) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for sub := range s.subs {
		sub.stop()
		delete(s.subs, sub)
		close(sub.ch)
	}
}
