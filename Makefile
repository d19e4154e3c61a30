# nitrovm build, test and demo entry points. The README's two commands are
# `make demo` (the main job) and `make test` (everything CI runs).

GO       ?= go
# go.mod names the Go release nitrovm is built with; where the installed go
# is older, GOTOOLCHAIN=auto has it fetch that release from the module proxy
# (go.dev/doc/toolchain). Some installs default to local; this overrides that
# unless GOTOOLCHAIN is set in the environment.
GOTOOLCHAIN ?= auto
export GOTOOLCHAIN
BIN      := bin/nitrovm
GOFLAGS  := -trimpath
export CGO_ENABLED := 0

.PHONY: all build test unit lint e2e demo bench fuzz clean

all: build

# build: the enclave /init is compiled first and embedded into nitrovm, so
# build-enclave works from the single binary.
build:
	$(GO) build $(GOFLAGS) -ldflags='-s -w' -o image/initbin/init ./guest/init
	$(GO) build $(GOFLAGS) -o $(BIN) ./cmd/nitrovm

# test: static checks, unit tests (fuzz targets run their seed corpora),
# then the end-to-end tests that boot real Linux guests (nested where needed).
test: lint unit e2e

lint:
	@gofmt="$$($(GO) env GOROOT)/bin/gofmt"; test -z "$$($$gofmt -l .)" || { echo "gofmt needed on:"; $$gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) run ./internal/tools/checkunsafe ./...

# unit: every package's tests, then, where /dev/kvm exists, the tests that
# drive it directly with tiny hand-made guests (tag kvm; even a PVM-only KVM
# runs these).
unit:
	$(GO) test -count=1 ./...
	@if [ -c /dev/kvm ]; then \
		echo "$(GO) test -count=1 -tags kvm ./internal/kvm ./internal/vmm ./internal/cli ./cmd/nitrovm"; \
		$(GO) test -count=1 -tags kvm ./internal/kvm ./internal/vmm ./internal/cli ./cmd/nitrovm; \
	else echo "unit: no /dev/kvm, skipping the kvm-tagged tests"; fi

e2e: build
	bash scripts/e2e.sh

demo: build
	bash scripts/demo.sh

bench:
	bash scripts/bench.sh

clean:
	rm -rf bin
