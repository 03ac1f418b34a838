# countmesh build. Needs only Go (see go.mod) and make; modules are fetched
# through the Go module proxy on first use.
GO      ?= go
BIN     := bin
LDFLAGS := -s -w
# Packages whose tests run with the race detector: every package that has
# goroutines or locks. crdt is pure and runs its 10,000-case properties
# without it, to keep `make test` fast.
RACE_PKGS = $(shell $(GO) list ./... | grep -v -e /crdt$$)

.PHONY: all build run test race lint bench fuzz image e2e ui-test chaos chaos-sabotage clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/countd ./cmd/countctl ./bench/cmd/countbench

# A single node on the embedded defaults: http://127.0.0.1:7070, data in ./data.
run: build
	./$(BIN)/countd

# Tests named TestLarge* check results over 10^5..10^6 counters; they hold no
# concurrency worth the race detector's 5-10x slowdown, so they run without it,
# in the packages that have them only (LARGE_PKGS: building and linking the
# other ~35 test binaries a second time, without -race, cost 22 s with a warm
# build cache).
LARGE_PKGS = $(sort $(dir $(shell grep -rl --include='*_test.go' '^func TestLarge' .)))
test:
	$(GO) vet ./...
	$(GO) test -count=1 ./crdt/
	$(if $(LARGE_PKGS),$(GO) test -count=1 -run '^TestLarge' $(LARGE_PKGS))
	$(GO) test -count=1 -race -skip '^TestLarge' $(RACE_PKGS)

race: test

lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo 'gofmt: the files above need formatting'; exit 1)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.6.1 ./...

# Every fuzz target for FUZZTIME each (make test runs their seed corpora);
# JOBS targets at a time. docs/security.md records the long runs.
FUZZTIME ?= 30s
JOBS     ?= 1
fuzz:
	FUZZTIME=$(FUZZTIME) JOBS=$(JOBS) GO=$(GO) ./scripts/fuzz.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./crdt/ ./store/ ./node/

# The FROM scratch image of bin/countd that docker-compose.yml runs (nothing
# is pulled: the context is just the Dockerfile and the static binary).
IMAGE ?= countmesh/countd:latest

image: build
	tar -cf - Dockerfile $(BIN)/countd $(BIN)/countctl | docker build -t $(IMAGE) -

# End-to-end: the image, docker-compose.yml's mesh of 3 regions x 2 nodes
# under a unique project name (own subnets and ports, so a mesh started with
# `docker-compose up` can run beside it), and the e2e suite against it
# (e2e/doc.go). The project's containers, networks and volumes are removed
# whatever happens; the exit status is the tests'. Needs Docker and
# docker-compose; about 3.5 minutes on 2 cores. Results land in e2e/results/.
E2E_IMAGE       ?= countmesh/countd:e2e
E2E_SUBNET      ?= 10.218
E2E_PORT_PREFIX ?= 720

e2e: build
	tar -cf - Dockerfile $(BIN)/countd $(BIN)/countctl | docker build -q -t $(E2E_IMAGE) - >/dev/null
	@p=countmesh-e2e-$$$$; \
	export COUNTMESH_E2E_PROJECT=$$p COUNTMESH_IMAGE=$(E2E_IMAGE) COUNTMESH_SUBNET=$(E2E_SUBNET) COUNTMESH_HTTP_PORT_PREFIX=$(E2E_PORT_PREFIX); \
	down() { timeout 180 docker-compose -p $$p down -v --remove-orphans -t 5 >/dev/null 2>&1 || echo "e2e: could not remove compose project $$p" >&2; }; \
	trap down EXIT; trap 'exit 130' INT TERM; \
	echo "e2e: compose project $$p"; \
	timeout 180 docker-compose -p $$p up -d --no-build || exit 1; \
	export COUNTMESH_TOKEN=$$(docker-compose -p $$p logs --no-log-prefix init | tail -n 1); \
	rc=0; timeout -k 30s 25m $(GO) test -tags e2e -count=1 -timeout 20m -v ./e2e/... || rc=$$?; \
	if [ $$rc -ne 0 ]; then mkdir -p e2e/results; docker-compose -p $$p logs --no-color >e2e/results/$$p.log 2>&1; \
		echo "e2e: FAILED; the nodes' logs are in e2e/results/$$p.log" >&2; fi; \
	exit $$rc

# The dashboard (/ui/) in a real headless Chromium driven by chromedp
# (httpapi/ui/browser_test.go): three countd processes with API tokens on
# 127.0.0.1-3, the page opened with a token; no console error, the three
# members, an increment on another node shown within 1 s. Installs Debian's
# chromium first when it is missing (needs root). About 40 s.
# UI_SCREENSHOT=docs/dashboard.png refreshes the committed screenshot.
UI_SCREENSHOT ?=

ui-test:
	./scripts/install-chromium.sh
	UI_SCREENSHOT='$(if $(UI_SCREENSHOT),$(abspath $(UI_SCREENSHOT)))' GO=$(GO) \
		$(GO) test -tags uitest -count=1 -v -timeout 5m -run '^TestDashboardInChromium$$' ./httpapi/ui/

# Chaos campaign (docs/chaos.md): real countd processes in network
# namespaces of their own, a nemesis picking faults from a seed, a checker
# over the recorded history. Needs root, ip and iptables; no Docker.
# CHAOS_SEED reruns a seed, CHAOS_CYCLES stops after N fault cycles,
# CHAOS_SECURE=0 runs without TLS/gossip key/tokens, CHAOS_TAGS builds
# countd with build tags. Histories land in chaos/results/<seed>.jsonl.
CHAOS_MINUTES ?= 5
CHAOS_TAGS    ?=
CHAOS_TIMEOUT  = $(shell awk 'BEGIN { print int($(CHAOS_MINUTES) + 10.99) }')m

chaos: build
	CHAOS_MINUTES=$(CHAOS_MINUTES) CHAOS_TAGS='$(CHAOS_TAGS)' $(if $(CHAOS_TAGS),,CHAOS_COUNTD=$(CURDIR)/$(BIN)/countd) \
		$(GO) test -tags chaos -count=1 -v -timeout $(CHAOS_TIMEOUT) -run '^TestChaosCampaign$$' ./chaos/campaign/

# One short campaign per deliberately broken countd (build tags
# sabotage_*): each must be caught by the checker, naming the check.
chaos-sabotage:
	$(GO) test -tags chaos -count=1 -v -timeout 20m -run '^TestChaosCatchesSabotage$$' ./chaos/campaign/

clean:
	rm -rf $(BIN)
