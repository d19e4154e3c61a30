#!/usr/bin/env bash
# bench-nsm.sh: the Nitro Secure Module on one core. Runs the nsm package's
# Go benchmarks (signed attestation documents and DescribePCR, in process)
# with -cpu 1 on this machine and prints their rates and the ratio between
# them; then, unless --host-only, the round trip from inside a guest
# (/dev/nsm through nitrovm's virtio-nsm device, nested L1; see
# scripts/bench-vsock.sh --parts nsm), next to the same Go benchmarks run in
# that L1.
# Usage: scripts/bench-nsm.sh [--host-only] [--benchtime 3s] [--nsm N]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH" GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" CGO_ENABLED=0

host_only=0 benchtime=3s nsmn=200
while [[ $# -gt 0 ]]; do
	case $1 in
	--host-only) host_only=1; shift ;;
	--benchtime) benchtime=$2; shift 2 ;;
	--nsm) nsmn=$2; shift 2 ;;
	*) echo "usage: $0 [--host-only] [--benchtime D] [--nsm N]" >&2; exit 2 ;;
	esac
done

out=$(go test -run '^$' -bench 'Attestation|DescribePCR|GetRandom' -cpu 1 -benchtime "$benchtime" -count 1 ./nsm)
echo "$out" | grep '^Benchmark'
echo "$out" | awk -v cpus="$(nproc)" -v load="$(cut -d' ' -f1 /proc/loadavg)" '
/^Benchmark/ { name = tolower(substr($1, 10)); for (i = 1; i <= NF; i++) if ($(i+1) == "req/s") r[name] = $i }
END {
	printf "nsm in-process, 1 CPU: attestation %.0f docs/s, DescribePCR %.0f/s, GetRandom %.0f/s (%d CPUs, load %s)\n", r["attestation"], r["describepcr"], r["getrandom"], cpus, load
	if (r["attestation"] > 0) printf "nsm ratio DescribePCR/attestation: %.1fx (cost of signing a document)\n", r["describepcr"] / r["attestation"]
}'

if [[ $host_only == 0 ]]; then
	bash scripts/bench-vsock.sh --parts nsm --nsm "$nsmn"
fi
