# Two commands matter (README): `make run` and `make test`.
GO       ?= go
BIN      := bin
PORT     ?= 8443
# -race on 2 cores is slow; the whole suite stays well under 20 minutes.
TESTFLAGS ?= -race -shuffle=on -count=1 -timeout 20m
BENCHFLAGS ?= -run '^$$' -bench . -benchmem
# make fuzz: each native fuzz target for FUZZTIME (make test runs each for
# FUZZSMOKE). The generated corpus goes to Go's cache; crashers land in the
# package's testdata/fuzz and become regression inputs of every go test.
FUZZTIME ?= 5m
FUZZSMOKE ?= 5s
FUZZ_TARGETS := codec:FuzzFrameReader codec:FuzzUpgradeParser codec:FuzzDecodeHeader \
	codec:FuzzCheckAuth tlsbridge:FuzzReadPlainSplits tlsbridge:FuzzHandshakeInput \
	tlsbridge:FuzzHelloComplete
# make soak: mixed traffic against the real binary for SOAK_DURATION.
SOAK_DURATION ?= 30m

.PHONY: all build run test deps fuzz soak bench lint fmt clean

all: build

build:
	$(GO) build -o $(BIN)/mles ./cmd/mles
	$(GO) build -o $(BIN)/mlescat ./cmd/mlescat

# The server on its embedded default: TLS with an ephemeral self-signed
# certificate for localhost. Port 8443 so that no root is needed.
run: build
	./$(BIN)/mles -p $(PORT)

# The third-party clients of test/interop (node ws, Python websockets and
# autobahn, headless Chromium), installed from Debian and npm when missing.
deps:
	./test/interop/deps.sh

# MLES_INTEROP=require: a missing third-party client fails its test
# instead of skipping it.
test: deps
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo 'gofmt needed: run gofmt -w'; exit 1; }
	MLES_INTEROP=require $(GO) test $(TESTFLAGS) ./...
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZSMOKE)

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t#*:}; \
		echo "fuzz $$pkg $$fn for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) ./$$pkg/; \
	done

soak:
	$(GO) test -tags soak -run '^TestSoak$$' -v -timeout 0 ./test/soak/ -args -soak.duration=$(SOAK_DURATION)

bench:
	$(GO) test $(BENCHFLAGS) ./codec/ ./ring/ ./tlsbridge/ ./server/

lint:
	$(GO) vet ./...
	gofmt -l .
	$(GO) run honnef.co/go/tools/cmd/staticcheck@2025.1.1 ./...

clean:
	rm -rf $(BIN)
