package worker

import "errors"

// Sentinel errors of the worker package, wrapped with %w; test them with
// errors.Is.
var (
	// ErrInvalidSpec is returned for a Spec or PoolConfig that cannot work.
	ErrInvalidSpec = errors.New("worker: invalid spec")
	// ErrDeadlinePassed is returned when a worker would start with its
	// deadline already behind it: it is never started.
	ErrDeadlinePassed = errors.New("worker: deadline passed")
	// ErrStoppedBeforeStart is returned when the worker was stopped
	// (Kill, Stop, a fenced pool) while its guard was still starting: it
	// is never started.
	ErrStoppedBeforeStart = errors.New("worker: stopped before start")
	// ErrStart is returned when the guard or the worker command could not
	// be started.
	ErrStart = errors.New("worker: start failed")
	// ErrExited is returned by calls that need a running guard after it
	// has exited.
	ErrExited = errors.New("worker: process exited")
	// ErrPoolRunning is returned when Run is called on a pool twice.
	ErrPoolRunning = errors.New("worker: pool already run")
	// ErrPoolStopped is returned by Pool.Restart when the pool stopped or
	// was fenced before every worker was replaced.
	ErrPoolStopped = errors.New("worker: pool stopped")
)
