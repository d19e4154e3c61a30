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
if [ $# -gt 0 ]; then
	go test -tags e2e -count=1 -v -timeout 25m "$@" ./test/e2e/...
	echo "e2e: done in $(($(date +%s) - t0)) s" >&2
	exit 0
fi

# Each test function boots its own L1. QEMU's TCG emulation of nested SVM
# is not fully reliable under load (rare L1 kernel crashes, frozen L1s,
# guest triple faults that never happen on real KVM), so a test function
# that fails is run again, up to NITROVM_E2E_ATTEMPTS times in all; every
# failed attempt stays in the log and is summed up at the end, and a test
# that fails every attempt fails the run.
go test -tags e2e -count=1 ./test/e2e/l1tools
attempts=${NITROVM_E2E_ATTEMPTS:-3}
summary=() failed=0
for t in TestBoot TestLifecycle TestNSM TestVsock TestHello TestJail; do
	for ((a = 1; ; a++)); do
		s=$(date +%s)
		if go test -tags e2e -count=1 -v -timeout 25m -run "^$t\$" ./test/e2e; then
			summary+=("$t: passed on attempt $a of $attempts ($(($(date +%s) - s)) s)")
			break
		fi
		echo "e2e: $t FAILED on attempt $a of $attempts ($(($(date +%s) - s)) s)" >&2
		if [ "$a" -ge "$attempts" ]; then
			summary+=("$t: FAILED all $attempts attempts")
			failed=1
			break
		fi
	done
done
printf 'e2e: %s\n' "${summary[@]}" >&2
echo "e2e: done in $(($(date +%s) - t0)) s" >&2
exit $failed
