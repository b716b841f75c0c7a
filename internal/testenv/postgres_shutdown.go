package testenv

import (
	"fmt"
	"syscall"
	"testing"
)

// ShutdownMode is how a PostgresProc is shut down by RestartWith.
type ShutdownMode int

// Shutdown modes (PostgreSQL's "smart" mode waits for every client to
// leave, which a replica never does, so it is not offered).
const (
	// ShutdownFast terminates every session (SIGINT): clients see their
	// connection closed by the server, a checkpoint is written.
	ShutdownFast ShutdownMode = iota + 1
	// ShutdownImmediate makes every server process exit at once (SIGQUIT)
	// without a checkpoint; the next start runs crash recovery.
	ShutdownImmediate
)

// String returns the mode's name as pg_ctl spells it.
func (m ShutdownMode) String() string {
	switch m {
	case ShutdownFast:
		return "fast"
	case ShutdownImmediate:
		return "immediate"
	default:
		return fmt.Sprintf("ShutdownMode(%d)", int(m))
	}
}

// signal is the postmaster signal of the mode.
func (m ShutdownMode) signal() (syscall.Signal, error) {
	switch m {
	case ShutdownFast:
		return syscall.SIGINT, nil
	case ShutdownImmediate:
		return syscall.SIGQUIT, nil
	default:
		return 0, fmt.Errorf("testenv: unknown %v", m)
	}
}

// RestartWith shuts the server down in mode, waits for its end, and starts
// it again on the same data and port, waiting until it answers queries.
func (p *PostgresProc) RestartWith(t testing.TB, mode ShutdownMode) {
	t.Helper()
	sig, err := mode.signal()
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.stopLocked(sig); err != nil {
		t.Error(err)
	}
	if err := p.startLocked(p.port); err != nil {
		t.Fatalf("postgres restart after %s shutdown: %v", mode, err)
	}
}

// ShutdownWith shuts the server down in mode and waits for its end;
// Restart starts it again.
func (p *PostgresProc) ShutdownWith(t testing.TB, mode ShutdownMode) {
	t.Helper()
	sig, err := mode.signal()
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.stopLocked(sig); err != nil {
		t.Error(err)
	}
}
