// Command regent-guard is the lean worker guard: regent runs every worker
// under one (see package worker, "The guard"). It links only the worker
// package's process mechanics, none of regent's backends, so that a guard
// costs little memory and starts fast; `regent run` execs it from beside
// its own binary (through a descriptor opened at start, so that it is the
// version regent opened even after an upgrade replaced the file), and
// falls back to `regent guard` (the whole regent binary) when it is not
// there.
//
// The one backend call a guard makes, releasing the term after its
// supervisor died so that the next leader need not wait out the lease, is
// handed to the regent binary the supervisor runs: the supervisor passes
// it to the guard as an open descriptor (worker.OrphanInfo.Helper), and
// the last guard of the pool runs `regent release-term` from it, bounded
// by releaseTimeout. The backend settings travel in the environment
// (REGENT_GUARD_RELEASE), never on argv.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/regentd/regent/worker"
)

// releaseTimeout bounds the release helper, start included.
const releaseTimeout = 5 * time.Second

func main() {
	os.Exit(worker.RunGuard(os.Args[1:], worker.GuardConfig{
		OnOrphaned:    release,
		OrphanTimeout: releaseTimeout,
	}))
}

// release runs `regent release-term` from the helper executable, with the
// queue, term and node of the guard's meta; it is killed when ctx ends.
func release(ctx context.Context, info worker.OrphanInfo) error {
	if info.Helper == nil {
		return errors.New("no regent binary handed to the guard: the term is left to expire")
	}
	args := []string{"release-term", "--queue", info.Meta["queue"], "--term", info.Meta["term"], "--node", info.Meta["node"]}
	if dl, ok := ctx.Deadline(); ok {
		// The helper ends by itself a little before it would be killed.
		args = append(args, "--timeout", (time.Until(dl) * 9 / 10).Round(time.Millisecond).String())
	}
	cmd := worker.FileCommand(ctx, info.Helper, "regent", args...)
	// The supervisor, whose pipes the guard's stdout and stderr are, is
	// dead: the helper's output is kept here and returned with an error.
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = 500 * time.Millisecond
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 512 {
			msg = msg[len(msg)-512:]
		}
		return fmt.Errorf("regent release-term: %v: %s", err, msg)
	}
	return nil
}
