# Two commands matter (README): `make run` and `make test`.
GO       ?= go
BIN      := bin
PORT     ?= 8443
# -race on 2 cores is slow; the whole suite stays well under 20 minutes.
TESTFLAGS ?= -race -shuffle=on -count=1 -timeout 20m
BENCHFLAGS ?= -run '^$$' -bench . -benchmem

.PHONY: all build run test bench lint fmt clean

all: build

build:
	$(GO) build -o $(BIN)/mles ./cmd/mles
	$(GO) build -o $(BIN)/mlescat ./cmd/mlescat

# The server on its embedded default: TLS with an ephemeral self-signed
# certificate for localhost. Port 8443 so that no root is needed.
run: build
	./$(BIN)/mles -p $(PORT)

test:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo 'gofmt needed: run gofmt -w'; exit 1; }
	$(GO) test $(TESTFLAGS) ./...

bench:
	$(GO) test $(BENCHFLAGS) ./codec/ ./ring/ ./tlsbridge/ ./server/

lint:
	$(GO) vet ./...
	gofmt -l .
	$(GO) run honnef.co/go/tools/cmd/staticcheck@2025.1.1 ./...

clean:
	rm -rf $(BIN)
