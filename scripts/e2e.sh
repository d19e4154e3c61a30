#!/usr/bin/env bash
# End-to-end tests: boots real Linux guests under nitrovm, nested under QEMU
# TCG (this machine's /dev/kvm cannot run an unmodified guest). Installs what
# it needs from Debian apt, builds (or reuses from the cache) the guest kernel
# and fetches the L1 kernel, then runs the e2e-tagged tests.
# Usage: scripts/e2e.sh [go test flags, e.g. -run TestBoot]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
export CGO_ENABLED=0

t0=$(date +%s)
bash scripts/deps.sh
kernel="$(bash scripts/kernel/build-guest.sh)"
bash scripts/kernel/l1-kernel.sh >/dev/null
echo "e2e: guest kernel $kernel (deps + kernels ready after $(($(date +%s) - t0)) s)" >&2

mkdir -p bin
go build -trimpath -o bin/nitrovm ./cmd/nitrovm
export NITROVM_BIN="$PWD/bin/nitrovm" NITROVM_E2E_REQUIRE=1
go test -tags e2e -count=1 -v -timeout 25m "$@" ./test/e2e/...
echo "e2e: done in $(($(date +%s) - t0)) s" >&2
