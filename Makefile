# Two commands matter (README): `make run` and `make test`.
GO       ?= go
BIN      := bin
PORT     ?= 8443
# -race on 2 cores is slow; the whole suite stays well under 20 minutes.
TESTFLAGS ?= -race -shuffle=on -count=1 -timeout 20m
BENCHFLAGS ?= -run '^$$' -bench . -benchmem
# make fuzz: each native fuzz target for FUZZTIME (make test runs each for
# FUZZSMOKE). New inputs go to Go's fuzz cache; a crasher lands in the
# package's testdata/fuzz. testdata/fuzz also holds the committed corpus of
# the long runs: every go test replays all of it. make test's smoke counts
# executions (Nx) instead of time: with a duration, go1.26's fuzz
# coordinator can fail a target with "context deadline exceeded" at the end
# of a busy run without any failing input (golang/go#75804, fixed in 1.27).
FUZZTIME ?= 5m
FUZZSMOKE ?= 10000x
FUZZ_TARGETS := codec:FuzzFrameReader codec:FuzzUpgradeParser codec:FuzzDecodeHeader \
	codec:FuzzCheckAuth tlsbridge:FuzzReadPlainSplits tlsbridge:FuzzHandshakeInput \
	tlsbridge:FuzzHelloComplete server/store:FuzzParse
# make lint: go vet and staticcheck in each module, gofmt over the tree.
LINT_MODULES := . benchmarks server/store/enginecmp
STATICCHECK_VERSION := v0.6.1
# make soak: mixed traffic against the real binary for SOAK_DURATION.
SOAK_DURATION ?= 30m

# make release: static binaries for Linux (no cgo, no libc), stripped and
# reproducible (-trimpath), with their SHA-256 sums, in DIST.
DIST ?= dist
RELEASE_ARCHS := amd64 arm64

.PHONY: all build run test deps fuzz soak bench lint fmt clean release

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
test: deps lint
	MLES_INTEROP=require $(GO) test $(TESTFLAGS) ./...
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZSMOKE)

release:
	@mkdir -p $(DIST)
	@set -e; for a in $(RELEASE_ARCHS); do \
		echo "release linux/$$a"; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$a $(GO) build -trimpath -ldflags='-s -w' -o $(DIST)/mles-linux-$$a ./cmd/mles; \
	done
	cd $(DIST) && sha256sum mles-linux-* > SHA256SUMS

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

# Both modules: the server's and the load generator's (benchmarks/).
# staticcheck is pinned to a release the module proxy serves; an untidy
# go.mod, any finding, vet report or unformatted file fails.
lint:
	@set -e; for m in $(LINT_MODULES); do \
		echo "lint $$m: go mod tidy -diff, go vet, staticcheck $(STATICCHECK_VERSION)"; \
		(cd $$m && $(GO) mod tidy -diff && $(GO) vet ./... && \
			$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...); \
	done
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo 'gofmt needed: run make fmt'; exit 1; }

fmt:
	gofmt -w .

clean:
	rm -rf $(BIN) $(DIST)
