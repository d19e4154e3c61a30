#!/usr/bin/env bash
# End-to-end tests: boots real Linux guests under nitrovm, nested under QEMU
# TCG (this machine's /dev/kvm cannot run an unmodified guest). Installs what
# it needs from Debian apt, builds (or reuses from the cache) the guest kernel
# and fetches the L1 kernel, then runs the e2e-tagged tests.
# Usage: scripts/e2e.sh [go test flags, e.g. -run TestBoot]
set -euo pipefail
cd "$(dirname "$0")/.."
# NITROVM_E2E_LOCK=FILE runs the nested part under flock FILE, so that
# "make test" or .ci/run on a shared machine holds the lock only here.
if [ -n "${NITROVM_E2E_LOCK:-}" ] && [ -z "${NITROVM_E2E_LOCKED:-}" ]; then
	exec env NITROVM_E2E_LOCKED=1 flock "$NITROVM_E2E_LOCK" bash "$0" "$@"
fi
export PATH="/usr/local/go/bin:$PATH" GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
export CGO_ENABLED=0

t0=$(date +%s)
bash scripts/deps.sh
kernel="$(bash scripts/kernel/build-guest.sh)"
bash scripts/kernel/l1-kernel.sh >/dev/null
echo "e2e: guest kernel $kernel (deps + kernels ready after $(($(date +%s) - t0)) s)" >&2

mkdir -p bin
go build -trimpath -o bin/nitrovm ./cmd/nitrovm
export NITROVM_BIN="$PWD/bin/nitrovm" NITROVM_E2E_REQUIRE=1
# Every test appends its attempts to this log (JSON lines, internal/e2elog);
# the table at the end comes from it. The only reruns are of L1 sessions
# whose emulated L1 failed (l1-panic, l1-freeze, l1-state-in-guest,
# l1-false-page-fault:
# internal/nested), at most
# NITROVM_E2E_MAX_RERUNS (default 10) in the whole run; each prints one
# "e2e: RERUN" line. Any other failure fails its test at once.
export NITROVM_E2E_LOG="${NITROVM_E2E_LOG:-$PWD/bin/e2e-log.jsonl}"
: >"$NITROVM_E2E_LOG"
report() { go run ./internal/tools/e2ereport "$@" "$NITROVM_E2E_LOG"; }
if [ $# -gt 0 ]; then
	rc=0
	go test -tags e2e -count=1 -v -timeout 25m "$@" ./test/e2e/... || rc=$?
	report || rc=1
	echo "e2e: done in $(($(date +%s) - t0)) s" >&2
	exit $rc
fi

# Every Test function of ./test/e2e, each run once in its own go test (a
# crash in one does not hide the others): new tests are picked up as they
# are added.
go test -tags e2e -count=1 ./test/e2e/l1tools
mapfile -t tests < <(go test -tags e2e -list '.*' ./test/e2e | grep '^Test')
[ ${#tests[@]} -gt 0 ] || { echo "e2e: no tests found in ./test/e2e" >&2; exit 1; }
echo "e2e: running ${tests[*]}" >&2
for t in "${tests[@]}"; do
	s=$(date +%s)
	rc=0
	go test -tags e2e -count=1 -v -timeout 25m -run "^$t\$" ./test/e2e || rc=$?
	echo "e2e: $t exit $rc ($(($(date +%s) - s)) s)" >&2
done
rc=0
report -expect "$(IFS=,; echo "${tests[*]}")" || rc=1
echo "e2e: done in $(($(date +%s) - t0)) s" >&2
exit $rc
