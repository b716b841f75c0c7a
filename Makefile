# regent — build, test, benchmark.
GO        ?= go
PKGS_RACE := ./config/... ./control/... ./fence/... ./election/... ./supervisor/... ./worker/... ./integration/observer/... ./internal/... ./deploy/...

.PHONY: all build deb deb-test test unit fuzz integration vet fmt-check rules-test matrix bench bench-failover bench-cost bench-scale bench-full bench-balance soak demo dev clean deb-host-test

all: build

## build: bin/regent and bin/regent-guard, the lean worker guard that
## regent runs from beside its own executable (ship both). The version,
## revision and dirty flag come from git through deploy/version.sh (-X:
## Go's own VCS stamp is missing in worktrees, from go run, and wherever
## -buildvcs is off); REGENT_VERSION=v1.2.3 overrides the version.
VERSION_LDFLAGS = $(shell deploy/version.sh ldflags)
build:
	$(GO) build -ldflags '$(VERSION_LDFLAGS)' -o bin/ ./cmd/regent ./cmd/regent-guard

## deb: dist/regent_<version>_<arch>.deb, built with dpkg-deb alone
## (deploy/deb/build.sh): /usr/bin/regent and regent-guard, the systemd
## unit, /etc/regent/regent.yaml (a conffile), the regent system user.
deb:
	GO=$(GO) bash deploy/deb/build.sh dist

## deb-test: the package's tests alone (also part of make unit): contents
## and control fields, the extracted binaries, config and unit, and a dpkg
## install, reinstall, remove and purge in a throwaway root.
deb-test:
	$(GO) test -count=1 ./deploy/deb/

## deb-host-test: lintian, then install (twice), check, remove and purge the
## package on this machine itself (CI runs it from .ci/run; it installs a
## package, so make test does not).
deb-host-test:
	GO=$(GO) bash deploy/deb/host-test.sh

## test: everything CI runs: format, vet, race-checked unit and contract tests,
## every fuzz target briefly, then the multi-process integration tests
## against real etcd and PostgreSQL.
test: fmt-check vet rules-test unit fuzz integration

# In make test, each fuzz target runs 3s (18 targets: about a minute and a
# half with the builds); `make test FUZZTIME=10s` overrides it.
test: FUZZTIME = 3s

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# The River example (examples/riverworker) is a module of its own: its
# dependencies stay out of regent's go.mod. It is vetted here and built by
# the integration tests (TestFence*), which need its modules downloaded.
EXAMPLES := examples/riverworker

vet:
	$(GO) vet ./...
	@for m in $(EXAMPLES); do $(GO) -C $$m vet ./...; done

## rules-test: the Prometheus rules of deploy/prometheus: promtool checks
## them, then runs each rule file's unit tests (*.test.yml). promtool comes
## from Debian's prometheus package (.ci/run installs it).
PROMTOOL ?= promtool
rules-test:
	@command -v $(PROMTOOL) >/dev/null || { echo "promtool not found: apt-get install prometheus (or PROMTOOL=path)"; exit 1; }
	$(PROMTOOL) check rules deploy/prometheus/*.rules.yml
	cd deploy/prometheus && $(PROMTOOL) test rules *.test.yml

## unit: the race detector on every package with concurrency, except the
## contract cases against servers behind TLS and auth (TestContractTLS):
## under -race the etcd they start (this test binary, race-instrumented)
## is too slow for the suite's 2 s leases on two cores; they run once more
## without it, right after.
unit:
	$(GO) test -race -count=1 -timeout 15m -skip '^TestContractTLS$$' $(PKGS_RACE)
	$(GO) test -count=1 -timeout 5m -run '^TestContractTLS$$' ./election/...
	$(GO) test -count=1 -timeout 5m ./cmd/...

## fuzz: every fuzz target (each `func Fuzz...` in a _test.go file, found
## automatically) for FUZZTIME, one after another; seed corpora in each
## package's testdata/fuzz. A crasher is written there: keep it, it is then
## a regular test case, and fix the code. A run that fails only with the
## fuzz engine's own "context deadline exceeded" at the end of FUZZTIME
## (no failing input written) is run once more.
FUZZTIME ?= 5s
fuzz:
	@set -e; for f in $$(find . -name '*_test.go' -not -path './.git/*' | xargs grep -l '^func Fuzz' | sort); do \
		dir=$$(dirname $$f); \
		for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			printf '%s %s: ' "$$dir" "$$t"; \
			out=$$($(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) -parallel 2 $$dir 2>&1) || \
			{ case "$$out" in *"Failing input written"*) false;; *"context deadline exceeded"*) \
				echo "(go's fuzz engine timed out a worker at the end, no input failed: once more)"; \
				out=$$($(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) -parallel 2 $$dir 2>&1);; *) false;; esac; } || \
			{ echo FAIL; echo "$$out"; exit 1; }; \
			last=$$(echo "$$out" | grep 'execs:' | tail -1 | sed 's/^fuzz: //'); echo "$${last:-ok}"; \
		done; \
	done

integration:
	@for m in $(EXAMPLES); do $(GO) -C $$m mod download; done
	$(GO) test -count=1 -timeout 30m ./integration/...

## matrix: only the fault matrix and the seeded random-fault run (3
## replicas x 20 queues, 2 min per backend), both also part of make test
## (integration). Replay a random run with ARGS='-random-seed=N' (the seed
## is printed at its start and in every failure).
matrix:
	$(GO) test -count=1 -timeout 40m -v -run 'Matrix|Random' ./integration/ -args $(ARGS)

## bench: every benchmark below (failover and handover, steady-state
## cost, scale), not part of make test: prints markdown tables and writes
## them to bench.md. Runs on a fresh clone (every server is started here).
BENCH_RUNS ?= 5
BENCH_TTLS ?= 2s
bench:
	rm -f bench.md
	$(MAKE) bench-failover bench-cost bench-scale BENCH_APPEND=1

BENCH_FILTER := grep -E '^(\||\#\#\#|ok|FAIL|---|Measured|panic|\s+\w+_test.go)'
BENCH_REPORT  = $(CURDIR)/bench.md

## bench-failover: failover and handover times (min/median/max).
bench-failover:
	$(if $(BENCH_APPEND),,rm -f bench.md)
	$(GO) test -count=1 -timeout 120m -run '^$$' -bench 'Failover|Handover' -benchtime 1x ./integration/ \
		-args -bench-runs=$(BENCH_RUNS) -bench-ttls=$(BENCH_TTLS) -bench-report=$(BENCH_REPORT) | $(BENCH_FILTER)

## bench-cost: steady-state backend requests/s, sessions, RSS and CPU of
## one replica leading COST_QUEUES queues, then of a follower (issue 5).
COST_QUEUES  ?= 1,100,1000
BENCH_WINDOW ?= 30s
bench-cost:
	$(if $(BENCH_APPEND),,rm -f bench.md)
	$(GO) test -count=1 -timeout 60m -run '^$$' -bench 'Cost' -benchtime 1x ./integration/ \
		-args -cost-queues=$(COST_QUEUES) -scale-window=$(BENCH_WINDOW) -bench-report=$(BENCH_REPORT) | $(BENCH_FILTER)

## bench-scale: 3 replicas x SCALE_QUEUES leadership-only queues on each
## backend, regent against one session and one lock per queue (issue 7).
SCALE_QUEUES ?= 10,100,1000,5000
bench-scale:
	$(if $(BENCH_APPEND),,rm -f bench.md)
	$(GO) test -count=1 -timeout 120m -run '^$$' -bench 'Scale' -benchtime 1x ./integration/ \
		-args -scale-queues=$(SCALE_QUEUES) -scale-window=$(BENCH_WINDOW) -bench-report=$(BENCH_REPORT) | $(BENCH_FILTER)

## bench-full: every scenario at lease TTLs 2s, 5s and 10s, 10 runs each.
bench-full:
	$(MAKE) bench-failover BENCH_RUNS=10 BENCH_TTLS=2s,5s,10s

## bench-balance: the balance test, 300 queues × 3 replicas (also in make
## test), showing its timings per phase.
bench-balance:
	$(GO) test -count=1 -timeout 60m -v -run 'TestBalance' ./integration/ -args -balance-queues=300 | grep -E 'balance_test|^(ok|FAIL|---)'

## soak: 3 replicas × 50 queues for SOAK_DURATION on each backend (pgbench
## beside Postgres); reports leadership changes (there must be none).
SOAK_DURATION ?= 10m
soak:
	$(GO) test -count=1 -timeout 60m -run '^$$' -bench Soak -benchtime 1x ./integration/ \
		-args -soak-duration=$(SOAK_DURATION) | grep -E '^(\||###|ok|FAIL|---|\s+soak_test)'

## dev: an embedded single-node etcd on 127.0.0.1:2379 (Ctrl-C to stop).
dev:
	$(GO) run ./cmd/regent dev

clean:
	rm -rf bin dist

## demo: embedded etcd, three replicas, a leader killed and the failover timed.
demo:
	$(GO) run ./cmd/regent demo

## Local cluster on Docker (docker-compose.yml): three regent replicas and a
## backend, BACKEND=etcd (default) or BACKEND=postgres. Images are built here
## (deploy/images.sh), cached by content hash; nothing is pulled.
.PHONY: images cluster-up cluster-status cluster-down cluster-test
BACKEND ?= etcd

## images: regent:local, regent-etcd:local, regent-postgres:local.
images:
	bash deploy/images.sh

## cluster-up: start the cluster and wait until every replica is healthy.
cluster-up:
	BACKEND=$(BACKEND) bash deploy/cluster.sh up

## cluster-status: leaders, terms, config, followers, /leader of each replica.
cluster-status:
	bash deploy/cluster.sh status

## cluster-down: remove the cluster's containers, networks and volumes.
cluster-down:
	bash deploy/cluster.sh down

## cluster-test: kill, network cut and rejoin on both backends, then tear down.
cluster-test:
	GO=$(GO) bash deploy/cluster.sh test
