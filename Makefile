# The front door: `make` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

GO        ?= go
BIN       := $(CURDIR)/bin
TOOLBIN   := $(CURDIR)/.bin
PROGRAMS  := yggd ygg yggsim echo-worker
# The programs are pure Go: built without cgo they are static and map no
# libc, which saves yggd and a worker 1.5 MiB each of resident memory.
# User and group names then come from /etc/passwd and /etc/group only (no
# NSS). go test -race needs cgo and keeps it.
build bench-build stage: export CGO_ENABLED := 0
# grpcnotrace leaves out grpc's golang.org/x/net/trace (its /debug/requests
# pages and their templates, which nothing here uses): 2 MiB less resident
# for yggd and for each worker.
GOTAGS    ?= grpcnotrace

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build the programs into ./bin
	$(GO) build -tags '$(GOTAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(PROGRAMS))

.PHONY: test
test: ## run every test (unit, integration, e2e scenarios) with the race detector
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

.PHONY: race
race: test ## same as test: the suite always runs with -race

.PHONY: e2e
e2e: ## run only the testscript scenarios (e2e/testdata/script)
	$(GO) test -count=1 ./e2e

.PHONY: lint
lint: ## go vet and gofmt
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: generate
generate: ## regenerate proto/*.pb.go with protoc and the plugins pinned in go.mod
	@mkdir -p $(TOOLBIN)
	$(GO) build -o $(TOOLBIN)/ google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc
	cd proto && protoc --plugin=protoc-gen-go=$(TOOLBIN)/protoc-gen-go \
		--plugin=protoc-gen-go-grpc=$(TOOLBIN)/protoc-gen-go-grpc \
		--go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative yggdrasil.proto

.PHONY: check
check: generate lint ## fail when generate, go mod tidy or gofmt would change anything
	$(GO) mod tidy
	gofmt -w $$(git ls-files '*.go')
	@if [ -n "$$(git status --porcelain)" ]; then echo "make check: the tree changed:"; git status --porcelain; git diff | head -50; exit 1; fi

include mk/install.mk
include mk/bench.mk
include mk/soak.mk

.PHONY: demo
demo: build ## run the simulated cloud, yggd and the echo worker, and show round trips (Ctrl-C stops)
	$(BIN)/yggsim demo
