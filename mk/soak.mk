# The soak test: not part of `make test`.

SOAK_DURATION      ?= 10m
SOAK_RATE          ?= 20
SOAK_RESTART_EVERY ?= 2m

.PHONY: soak
soak: ## run yggd under load for SOAK_DURATION (10m) with a broker restart every SOAK_RESTART_EVERY (2m); prints the figures
	YGG_SOAK=1 SOAK_DURATION=$(SOAK_DURATION) SOAK_RATE=$(SOAK_RATE) SOAK_RESTART_EVERY=$(SOAK_RESTART_EVERY) \
		$(GO) test -count=1 -timeout 3h -run '^TestSoak$$' -v ./e2e
