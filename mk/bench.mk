# Benchmarks (not part of make test): see BENCHMARKS.md.
BENCHBIN  := $(CURDIR)/bin/bench
BENCHREPS ?= 5
BENCHARGS ?=

.PHONY: bench-build
bench-build:
	$(GO) build -tags '$(GOTAGS)' -o $(BENCHBIN)/ ./cmd/yggd ./cmd/yggsim ./cmd/echo-worker

.PHONY: bench
bench: bench-build ## run the benchmark matrix: yggd against ceilings a (relay) and b (ideal pipeline), interleaved; then the start-up case
	@# The start-up case runs even when the matrix misses a goal; make
	@# bench then fails with the first failure.
	@$(BENCHBIN)/yggsim bench-matrix --bin $(BENCHBIN) --reps $(BENCHREPS) --json $(BENCHBIN)/bench.json $(BENCHARGS); m=$$?; \
	$(BENCHBIN)/yggsim bench-startup --bin $(BENCHBIN) $(STARTUPARGS); s=$$?; \
	if [ $$m -ne 0 ]; then exit $$m; fi; exit $$s

.PHONY: bench-startup
bench-startup: bench-build ## exec → online status of yggd, 30 starts (STARTUPARGS="--baseline DIR" adds another build, interleaved)
	$(BENCHBIN)/yggsim bench-startup --bin $(BENCHBIN) $(STARTUPARGS)

.PHONY: bench-soak
bench-soak: bench-build ## run the long benchmarks: 1M messages at 100 B and 50k at 64 KiB through yggd
	$(BENCHBIN)/yggsim bench-matrix --bin $(BENCHBIN) --reps 1 --soak --json $(BENCHBIN)/bench-soak.json $(BENCHARGS)

.PHONY: bench-go
bench-go: ## run the Go micro-benchmarks of the hot paths
	$(GO) test -run '^$$' -bench . -benchmem ./yggdrasil/

SUSTAINED_COUNT ?= 1000000
.PHONY: bench-sustained
bench-sustained: bench-build ## yggd behind a real "yggsim serve" for SUSTAINED_COUNT round trips (default 1,000,000): rate per tenth, the sim's RSS
	$(BENCHBIN)/yggsim bench-sustained --bin $(BENCHBIN) --count $(SUSTAINED_COUNT) --json $(BENCHBIN)/bench-sustained.json $(SUSTAINEDARGS)

FLEETHOSTS ?= 10000
FLEETARGS  ?=

.PHONY: bench-fleet
bench-fleet: bench-build ## run FLEETHOSTS (10000) simulated hosts against yggsim serve: time to all online, the sim's RSS a host, GET /v2/connections p50/p99, a ping of every host
	$(BENCHBIN)/yggsim bench-fleet --bin $(BENCHBIN) --hosts $(FLEETHOSTS) $(FLEETARGS)

# yggdrasil 0.1.5 beside yggd (BENCHMARKS.md, "Side by side with 0.1.5"):
#   make bench-upstream-build && make bench BENCHARGS='--upstream bin/upstream-0.1.5'
# UPSTREAM_GIT=DIR takes the public tag from a local git directory instead
# of cloning GitHub.
UPSTREAMDIR ?= $(CURDIR)/bin/upstream-0.1.5

.PHONY: bench-upstream-build
bench-upstream-build: ## build yggdrasil 0.1.5 (its yggd and echo worker, deadlock fixed) into UPSTREAMDIR for bench-matrix --upstream
	mk/build-upstream.sh $(UPSTREAMDIR)
