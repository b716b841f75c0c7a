package integration

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regentd/regent/integration/observer"
	"github.com/regentd/regent/internal/faultproxy"
	"github.com/regentd/regent/internal/testenv"
)

var (
	randomSeed     = flag.Int64("random-seed", 0, "seed of TestRandomFaults (0: time-based); the seed is logged, pass it back to replay a run's fault schedule")
	randomDuration = flag.Duration("random-duration", 2*time.Minute, "how long TestRandomFaults injects faults, per backend (one backend after the other)")
	randomTTL      = flag.Duration("random-ttl", testTTL, "lease TTL of TestRandomFaults' replicas (renewal TTL/5, margin TTL/10); fault durations scale with it")
)

const (
	randomReplicas = 3
	randomQueues   = 20
	// randomTick is the workers' line interval, hence the observer's
	// timer resolution, in the random run (20 queues write at once).
	randomTick = 10 * time.Millisecond
	// randomMaxFaults is how many replicas may be faulted at once.
	randomMaxFaults = 2
	// randomSettle bounds the wait for a leader running workers on every
	// queue at the start (60 guards and workers spawned, then moved by the
	// balancer; measured 0.9-1.5 s on a loaded 2-core machine) and in
	// the end-of-run checks. A hang detector, not a liveness target.
	randomSettle = 30 * time.Second
)

// randomGapBound is the longest a queue may go without a worker during
// the run and until every queue is led again after the last heal. One
// fault of its leader leaves a queue without workers for at most the
// documented TTL + 1 s (frozen or cut off; less after a kill or a
// restart); with two replicas faulted at once the takeover can itself be
// interrupted, which chains two of them. Plus the matrix's slack for a
// loaded machine.
func randomGapBound(ttl time.Duration) time.Duration {
	// Three faults may chain on one queue (seed 1795509114617837090 had an
	// 11.1 s gap on etcd with 2 s leases): a hang check, not a target.
	return 3*(ttl+time.Second) + boundSlack
}

// Kinds of random fault.
const (
	faultKill      = "sigkill"   // SIGKILL, down for a while, started again
	faultStop      = "sigstop"   // SIGSTOP for a while, then SIGCONT
	faultBlackhole = "blackhole" // its proxy holds back all traffic, then passes
	faultRestart   = "restart"   // SIGTERM (must exit 0), started again
)

var faultKinds = []string{faultKill, faultStop, faultBlackhole, faultRestart}

// plannedFault is one entry of the seeded schedule.
type plannedFault struct {
	at      time.Duration // from the start of the run
	replica int
	kind    string
	hold    time.Duration // how long the fault lasts
}

// faultSchedule derives the whole fault schedule from the seed, before
// the run, so that a seed replays the same faults at the same offsets
// (a fault whose replica is still faulted at its time is skipped, which
// depends on timing only through SIGTERM exits and restarts).
func faultSchedule(rng *rand.Rand, d, ttl time.Duration) []plannedFault {
	uniform := func(lo, hi time.Duration) time.Duration {
		return lo + time.Duration(rng.Int64N(int64(hi-lo)))
	}
	var out []plannedFault
	at := uniform(time.Second, 3*time.Second)
	for at < d {
		f := plannedFault{at: at, replica: rng.IntN(randomReplicas), kind: faultKinds[rng.IntN(len(faultKinds))]}
		switch f.kind {
		case faultKill:
			f.hold = uniform(0, 2*ttl)
		case faultStop, faultBlackhole:
			f.hold = uniform(ttl/2, 5*ttl/2)
		case faultRestart:
			f.hold = uniform(0, time.Second)
		}
		out = append(out, f)
		at += uniform(500*time.Millisecond, 3*time.Second)
	}
	return out
}

// seededTB prefixes every failure message with the run's seed.
type seededTB struct {
	*testing.T
	seed int64
}

func (s *seededTB) prefix() string {
	return fmt.Sprintf("[seed %d, replay with -random-seed %d] ", s.seed, s.seed)
}

func (s *seededTB) Errorf(format string, args ...any) {
	s.T.Helper()
	s.T.Errorf(s.prefix()+format, args...)
}

func (s *seededTB) Fatalf(format string, args ...any) {
	s.T.Helper()
	s.T.Fatalf(s.prefix()+format, args...)
}

func (s *seededTB) Error(args ...any) {
	s.T.Helper()
	s.T.Error(append([]any{s.prefix()}, args...)...)
}

func (s *seededTB) Fatal(args ...any) {
	s.T.Helper()
	s.T.Fatal(append([]any{s.prefix()}, args...)...)
}

// chaosSlot is one replica of the random run, always behind its own proxy.
type chaosSlot struct {
	opts   replicaOpts
	r      *replica
	p      *faultproxy.Proxy
	fault  string // "" while healthy
	healAt time.Time
	past   []*replica // earlier processes of this slot (killed, restarted)
}

// 3 replicas × 20 queues under repeated random faults (SIGKILL and
// restart, SIGSTOP/SIGCONT, a partition through a replica's proxy,
// graceful restart) for -random-duration on each backend, seeded by
// -random-seed. No queue may go without a worker for longer than
// randomGapBound, during the run or after it until every queue is led
// again. Afterwards every fault is healed and the matrix's end-of-case
// properties are asserted over every queue: one leader each, `status
// --check` OK, no replica exited, no orphan worker, a clean stop, no
// overlap of terms.
func TestRandomFaults(t *testing.T) {
	seed := *randomSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	msg := fmt.Sprintf("random faults: seed %d, %s per backend, %d replicas × %d queues, lease TTL %s; replay: go test -count=1 -run 'TestRandomFaults' ./integration/ -args -random-seed=%d (-run 'TestRandomFaults/etcd' or '/postgres' for one backend)",
		seed, *randomDuration, randomReplicas, randomQueues, *randomTTL, seed)
	t.Log(msg)
	if !testing.Verbose() {
		// Also on the test binary's own output, which go test shows when
		// the package fails, even by a timeout that loses the test's log.
		fmt.Println("TestRandomFaults:", msg)
	}
	for i, name := range []string{"etcd", "postgres"} {
		// One backend after the other: run in parallel, their 120 guards
		// and workers on 2 cores already loaded by other tests took
		// minutes to settle (measured), for no gain in wall time.
		t.Run(name, func(t *testing.T) {
			st := &seededTB{T: t, seed: seed}
			var be backend
			var targets []string // the server behind each replica's proxy
			if name == "etcd" {
				// A private three-member cluster; each replica reaches
				// its own member through its proxy, so that a blackhole
				// cuts that replica off entirely.
				ec := testenv.NewEtcdCluster(st, 3)
				be = etcdClusterBackend(ec)
				for _, ep := range ec.Endpoints() {
					targets = append(targets, strings.TrimPrefix(ep, "http://"))
				}
			} else {
				be = postgresBackend(st)
				targets = []string{be.addr}
			}
			runChaos(st, be, targets, rand.New(rand.NewPCG(uint64(seed), uint64(i))))
		})
	}
}

// runChaos runs the random faults on be; replica i's proxy forwards to
// targets[i % len(targets)].
func runChaos(t *seededTB, be backend, targets []string, rng *rand.Rand) {
	c := newCluster(t, be)
	tail := newTailReader(t, c.outFile)
	var queues []string
	for i := 0; i < randomQueues; i++ {
		queues = append(queues, fmt.Sprintf("r%02d", i))
	}
	slots := make([]*chaosSlot, randomReplicas)
	for i := range slots {
		p, err := faultproxy.Start(targets[i%len(targets)])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		s := &chaosSlot{p: p, opts: replicaOpts{
			node:       fmt.Sprintf("r%d", i+1),
			queues:     queues,
			backend:    be.viaProxy(p.Addr()),
			ttl:        *randomTTL,
			workerArgs: []string{"-interval", randomTick.String()},
			extra:      []string{"--log-level", "info"},
		}}
		s.r = c.start(s.opts)
		slots[i] = s
	}
	began := time.Now()
	c.waitLeadersRunning(tail.Lines, queues, 250*time.Millisecond, randomSettle)
	t.Logf("%s: every queue led %s after the replicas started", be.name, time.Since(began).Round(time.Millisecond))

	schedule := faultSchedule(rng, *randomDuration, *randomTTL)
	t.Logf("%s: %d faults scheduled over %s", be.name, len(schedule), *randomDuration)
	counts := map[string]int{}
	start := time.Now()
	next := 0
	for {
		now := time.Now()
		active := 0
		for _, s := range slots {
			if s.fault != "" && !now.Before(s.healAt) {
				heal(t, c, s)
			}
			if s.fault != "" {
				active++
			}
			if (s.fault == "" || s.fault == faultStop || s.fault == faultBlackhole) && s.r.exited() {
				t.Fatalf("%s: replica %s exited unexpectedly (fault %q): %v", be.name, s.opts.node, s.fault, s.r.exitErr)
			}
		}
		if next == len(schedule) && active == 0 {
			break
		}
		if next < len(schedule) && now.Sub(start) >= schedule[next].at {
			f := schedule[next]
			next++
			s := slots[f.replica]
			if s.fault != "" || active >= randomMaxFaults {
				t.Logf("%s: +%.1fs skip %s of %s (busy)", be.name, now.Sub(start).Seconds(), f.kind, s.opts.node)
				continue
			}
			if (f.kind == faultRestart || f.kind == faultBlackhole) && !s.r.healthy() {
				// Before its first session: a replica that cannot reach
				// the backend at start exits 1 (documented), and before
				// its signal handler SIGTERM kills it outright; neither
				// is the fault meant here.
				t.Logf("%s: +%.1fs skip %s of %s (still starting)", be.name, now.Sub(start).Seconds(), f.kind, s.opts.node)
				continue
			}
			t.Logf("%s: +%.1fs %s %s for %s", be.name, now.Sub(start).Seconds(), f.kind, s.opts.node, f.hold.Round(time.Millisecond))
			inject(s, f.kind)
			s.fault, s.healAt = f.kind, now.Add(f.hold)
			counts[f.kind]++
			continue
		}
		time.Sleep(20 * time.Millisecond) // schedule pacing
	}
	t.Logf("%s: injected %v in %s; every fault healed", be.name, counts, time.Since(start).Round(time.Millisecond))

	// Leaders again within bounds: every queue led after the last heal,
	// and no queue ever without a worker for longer than the bound.
	bound := randomGapBound(*randomTTL)
	c.waitLeadersRunning(tail.Lines, queues, 250*time.Millisecond, bound)
	gaps := workerGaps(tail.Lines(), queues, start, time.Now())
	for i, g := range gaps[:min(3, len(gaps))] {
		t.Logf("%s: longest gaps: %d. %s without a worker on %s from +%.1fs (bound %s)",
			be.name, i+1, g.d.Round(time.Millisecond), g.queue, g.from.Sub(start).Seconds(), bound)
	}
	for _, g := range gaps {
		if g.d > bound {
			t.Errorf("%s: queue %s had no worker for %s from +%.1fs; bound %s",
				be.name, g.queue, g.d.Round(time.Millisecond), g.from.Sub(start).Seconds(), bound)
		}
	}

	reps := make([]*replica, len(slots))
	for i, s := range slots {
		reps[i] = s.r
	}
	healed := time.Now()
	rep := c.finishHealed(reps, queues, tail.Lines, randomTick, randomSettle)
	t.Logf("%s: end-of-run checks took %s", be.name, time.Since(healed).Round(time.Millisecond))
	changes := 0
	for _, ivs := range rep.Queues {
		changes += len(ivs) - 1
	}
	t.Logf("%s: %d leadership changes over %d queues, max overlap %s, %d torn lines", be.name, changes, len(rep.Queues), rep.MaxOverlap, tail.bad)
	// How often a guard started after the deadline on its argv: caught
	// up from its control pipe, or (no renewal queued) refused.
	var caughtUp, refused int
	for _, s := range slots {
		for _, r := range append(s.past, s.r) {
			out := r.log.String()
			caughtUp += strings.Count(out, "deadline on argv passed before start")
			refused += strings.Count(out, "deadline passed before start")
		}
	}
	t.Logf("%s: guards that started after their argv deadline: %d caught up from the control pipe, %d refused", be.name, caughtUp, refused)
}

// healthy reports whether the replica's /healthz answers 200 (it runs
// with a backend session).
func (r *replica) healthy() bool {
	code, _ := r.get("/healthz")
	return code == 200
}

// inject starts a fault on the slot's replica.
func inject(s *chaosSlot, kind string) {
	switch kind {
	case faultKill:
		s.r.kill()
	case faultStop:
		s.r.signal(syscall.SIGSTOP)
	case faultBlackhole:
		s.p.SetMode(faultproxy.Blackhole)
	case faultRestart:
		s.r.signal(syscall.SIGTERM)
	}
}

// heal ends the slot's fault.
func heal(t *seededTB, c *cluster, s *chaosSlot) {
	t.Helper()
	switch s.fault {
	case faultKill:
		s.past = append(s.past, s.r)
		s.r = c.start(s.opts)
	case faultStop:
		s.r.signal(syscall.SIGCONT)
	case faultBlackhole:
		s.p.SetMode(faultproxy.Pass)
	case faultRestart:
		if code := s.r.wait(hangTimeout); code != 0 {
			t.Errorf("replica %s exited %d after SIGTERM; want 0", s.opts.node, code)
		}
		s.past = append(s.past, s.r)
		s.r = c.start(s.opts)
	}
	s.fault = ""
}

// workerGap is a time during which no worker of a queue wrote a line.
type workerGap struct {
	queue string
	from  time.Time
	d     time.Duration
}

// workerGaps returns, longest first, each queue's longest time between
// from and to without a worker line (of any node or term).
func workerGaps(lines []observer.Line, queues []string, from, to time.Time) []workerGap {
	last := map[string]time.Time{}
	worst := map[string]workerGap{}
	for _, q := range queues {
		last[q] = from
	}
	note := func(q string, at time.Time) {
		if d := at.Sub(last[q]); d > worst[q].d {
			worst[q] = workerGap{queue: q, from: last[q], d: d}
		}
	}
	for _, l := range lines {
		prev, ok := last[l.Queue]
		if !ok || l.At.Before(from) || l.At.After(to) {
			continue
		}
		if l.At.After(prev) {
			note(l.Queue, l.At)
			last[l.Queue] = l.At
		}
	}
	out := make([]workerGap, 0, len(queues))
	for _, q := range queues {
		note(q, to)
		out = append(out, worst[q])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].d > out[j].d })
	return out
}
