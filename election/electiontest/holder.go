package electiontest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/regentd/regent/election"
	"github.com/regentd/regent/internal/testenv"
)

// envHolder names the environment variable that turns a re-executed test
// binary into a holder process; its value is a JSON holderSpec.
const envHolder = "REGENT_ELECTIONTEST_HOLDER"

const (
	// holderReady prefixes the line a holder prints once it leads.
	holderReady = "holder leads term "
	// holderStartTimeout bounds a holder's start, until it leads.
	holderStartTimeout = 60 * time.Second
	// holderLifetime bounds how long a forgotten holder lives.
	holderLifetime = 2 * time.Minute
)

// HolderOpener opens a backend in a holder process, from the environment
// that Harness.HolderEnv returned in the test process.
type HolderOpener func(ctx context.Context, opts election.Options, log hclog.Logger) (election.Backend, error)

// HolderMain must be called first in the TestMain of a package that runs
// the suite. In a normal test run it returns at once. In a holder process
// (the suite re-executed the test binary) it opens the backend with open,
// campaigns, prints its term, holds the leadership until it is killed, its
// stdin closes or a time limit passes, and exits.
func HolderMain(open HolderOpener) {
	raw, ok := os.LookupEnv(envHolder)
	if !ok {
		return
	}
	os.Exit(runHolder(raw, open))
}

// holderSpec tells a holder process what to lead.
type holderSpec struct {
	Cluster       string          `json:"cluster"`
	Node          string          `json:"node"`
	Queue         string          `json:"queue"`
	Payload       json.RawMessage `json:"payload"`
	LeaseTTL      time.Duration   `json:"lease_ttl"`
	RenewInterval time.Duration   `json:"renew_interval"`
	RetryInterval time.Duration   `json:"retry_interval"`
}

// runHolder is the body of a holder process; it returns the exit code.
func runHolder(raw string, open HolderOpener) int {
	log := hclog.New(&hclog.LoggerOptions{Name: "holder", Output: os.Stderr, Level: hclog.Debug})
	var spec holderSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		log.Error("bad holder spec", "error", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), holderStartTimeout)
	defer cancel()
	b, err := open(ctx, election.Options{
		Identity: election.Identity{
			Cluster: spec.Cluster,
			Node:    spec.Node,
			Host:    "host-" + spec.Node,
			PID:     os.Getpid(),
		},
		Timing: election.Timing{LeaseTTL: spec.LeaseTTL, RenewInterval: spec.RenewInterval, RetryInterval: spec.RetryInterval},
	}, log)
	if err != nil {
		log.Error("cannot open the backend", "error", err)
		return 1
	}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
		defer ccancel()
		_ = b.Close(cctx)
	}()
	l, err := b.Campaign(ctx, spec.Queue, spec.Payload)
	if err != nil {
		log.Error("campaign failed", "error", err)
		return 1
	}
	fmt.Printf("%s%d\n", holderReady, l.Term())
	log.Info("leading", "queue", spec.Queue, "term", l.Term())

	// The reader ends at EOF, or with the process.
	stdinClosed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stdinClosed)
	}()
	select {
	case <-stdinClosed:
		log.Info("test binary gone")
	case <-l.Done():
		log.Warn("leadership lost")
	case <-time.After(holderLifetime):
		log.Warn("holder lifetime over")
	}
	return 0
}

// holder is a holder process started by the suite.
type holder struct {
	*testenv.Helper
	term int64
}

// startHolder starts a process that leads queue as node and waits until it
// leads. It is killed at the end of the test.
func (e *env) startHolder(node, queue string) *holder {
	e.t.Helper()
	h, term := StartHolder(e.t, e.h.HolderEnv(e.t), e.cluster, node, queue)
	return &holder{Helper: h, term: term}
}

// StartHolder starts a holder process (see HolderMain) that leads queue of
// cluster as node, with the suite's LeaseTTL, RenewInterval and
// RetryInterval, and waits until it leads. env is added to its
// environment (Harness.HolderEnv). It returns the process, killed at the
// end of the test, and the term it leads. Backend packages use it for
// tests of their own (freezing the leader with SIGSTOP, for example).
func StartHolder(t testing.TB, env []string, cluster, node, queue string) (*testenv.Helper, int64) {
	t.Helper()
	spec, err := json.Marshal(holderSpec{
		Cluster:       cluster,
		Node:          node,
		Queue:         queue,
		Payload:       payload(node),
		LeaseTTL:      LeaseTTL,
		RenewInterval: RenewInterval,
		RetryInterval: RetryInterval,
	})
	if err != nil {
		t.Fatal(err)
	}
	env = append(append([]string(nil), env...), envHolder+"="+string(spec))
	h, line := testenv.StartHelper(t, env, holderReady, holderStartTimeout)
	term, err := strconv.ParseInt(line, 10, 64)
	if err != nil {
		t.Fatalf("holder printed term %q: %v", line, err)
	}
	t.Logf("holder process %d leads %s with term %d", h.PID(), queue, term)
	return h, term
}
