# countmesh build. Needs only Go (see go.mod) and make; modules are fetched
# through the Go module proxy on first use.
GO      ?= go
BIN     := bin
LDFLAGS := -s -w
# Packages whose tests run with the race detector: every package that has
# goroutines or locks. crdt is pure and runs its 10,000-case properties
# without it, to keep `make test` fast.
RACE_PKGS = $(shell $(GO) list ./... | grep -v -e /crdt$$)

.PHONY: all build run test race lint bench e2e clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/countd ./cmd/countctl ./bench/cmd/countbench

# A single node on the embedded defaults: http://127.0.0.1:7070, data in ./data.
run: build
	./$(BIN)/countd

test:
	$(GO) vet ./...
	$(GO) test -count=1 ./crdt/
	$(GO) test -count=1 -race $(RACE_PKGS)

race: test

lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo 'gofmt: the files above need formatting'; exit 1)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@2025.1.1 ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./crdt/ ./store/ ./node/

clean:
	rm -rf $(BIN)
