#!/usr/bin/env bash
# Fuzz campaign over the guest-facing parsers, one target at a time (CPU is
# scarce), each worker under the VMM's seccomp filter (internal/jail/jailtest).
# Usage: scripts/fuzz-campaign.sh [FUZZTIME, default 10m]
# NITROVM_FUZZ_MINIMIZE bounds the minimizing of each new input (go test
# -fuzzminimizetime, default here 10s; Go's own 60s let FuzzStateMachine
# spend a 2-minute campaign minimizing, at 3,760 executions).
# Logs: /tmp/fuzz-<target>.log; the summary (execs, result) on stdout.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH" GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" CGO_ENABLED=0
t=${1:-10m}
targets=(
	"FuzzQueue ./internal/devices/virtio"
	"FuzzPackets ./internal/devices/virtio/vsock"
	"FuzzStateMachine ./internal/devices/virtio/vsock"
	"FuzzFraming ./internal/devices/virtio/nsm"
	"FuzzDecodeRequest ./nsm"
	"FuzzConsoleScanner ./internal/vmm"
)
for tp in "${targets[@]}"; do
	set -- $tp
	log=/tmp/fuzz-$1.log
	go test -run '^$' -fuzz "^$1\$" -fuzztime "$t" -fuzzminimizetime "${NITROVM_FUZZ_MINIMIZE:-10s}" -parallel 1 "$2" >"$log" 2>&1
	rc=$?
	execs=$(grep -o 'execs: [0-9]*' "$log" | tail -1)
	echo "$1 ($2): exit $rc, $execs, $(grep -c -i 'failing input\|--- FAIL' "$log") failures"
done
