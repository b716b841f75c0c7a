# regent — build, test, benchmark.
GO        ?= go
BIN       := bin/regent
PKGS_RACE := ./config/... ./election/... ./supervisor/... ./worker/... ./integration/observer/... ./integration/faultproxy/... ./internal/... ./deploy/...

.PHONY: all build test unit integration vet fmt-check matrix bench bench-full bench-balance soak demo dev clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/regent

## test: everything CI runs: format, vet, race-checked unit and contract tests,
## then the multi-process integration tests against real etcd and PostgreSQL.
test: fmt-check vet unit integration

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 15m $(PKGS_RACE)
	$(GO) test -count=1 -timeout 5m ./cmd/...

integration:
	$(GO) test -count=1 -timeout 30m ./integration/...

## matrix: the fault matrix (also part of make test) and the seeded
## random-fault run (3 replicas x 20 queues, 2 min per backend; not yet in
## make test). Replay a run with ARGS='-random-seed=N'.
matrix:
	$(GO) test -count=1 -timeout 40m -tags matrix -run 'Matrix|Random' ./integration/ -args $(ARGS)

## bench: failover and handover benchmarks (not part of make test): prints
## min/median/max tables and writes them to bench.md.
BENCH_RUNS ?= 5
BENCH_TTLS ?= 2s
bench:
	rm -f bench.md
	$(GO) test -count=1 -timeout 120m -run '^$$' -bench 'Failover|Handover' -benchtime 1x ./integration/ \
		-args -bench-runs=$(BENCH_RUNS) -bench-ttls=$(BENCH_TTLS) -bench-report=$(CURDIR)/bench.md | grep -E '^(\||###|ok|FAIL|---)'

## bench-full: every scenario at lease TTLs 2s, 5s and 10s, 10 runs each.
bench-full:
	$(MAKE) bench BENCH_RUNS=10 BENCH_TTLS=2s,5s,10s

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
	rm -rf bin

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
