#!/usr/bin/env bash
# bench.sh (make bench): runs every nitrovm benchmark in sequence and prints
# one summary table. Each benchmark compares with a reference run on this
# machine in the same run (ratios), never with fixed times:
#
#   eif    scripts/bench-eif.sh     describe-eif of a 1 GiB EIF vs sha384sum
#   nsm    scripts/bench-nsm.sh     NSM requests/s on one CPU (Go benchmarks)
#   kms    scripts/bench-kms.sh     KMS Decrypt/s on one CPU, plain and with
#                                   Recipient, vs nsmithuk/local-kms (plain)
#   boot   scripts/bench-boot.sh    boot-to-init time and VM exits, nitrovm vs
#                                   QEMU microvm (nested)
#   vsock  scripts/bench-vsock.sh   vsock MB/s and VMM RSS, nitrovm vs QEMU
#                                   microvm + vhost-vsock, and attestation
#                                   round trips/s from inside the guest (nested)
#   density scripts/bench-density.sh 8 and 16 enclaves of 128 MiB at once vs
#                                   as many QEMU microvm guests (nested)
#
# Usage: scripts/bench.sh [NAME...]     (default: all six, in that order)
#        scripts/bench.sh --summary LOGDIR [NAME...]   (table of an earlier run)
# A benchmark that fails is reported in the table; the others still run.
# NITROVM_BENCH_LOCK=FILE runs each nested benchmark (boot, vsock, density)
# under flock FILE, one hold per benchmark, for hosts whose nested VMs take
# turns (as NITROVM_E2E_LOCK does for scripts/e2e.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH" GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" CGO_ENABLED=0

summary_only=0
if [[ ${1:-} == --summary ]]; then
	summary_only=1 logs=$2
	shift 2
fi
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(eif nsm kms boot vsock density)
declare -A status secs
if [[ $summary_only == 0 ]]; then
	logs="$(mktemp -d "${TMPDIR:-/tmp}/nitrovm-bench.XXXXXX")"
	mkdir -p bin
	go build -trimpath -o bin/nitrovm ./cmd/nitrovm || exit 1
	export NITROVM_BIN="$PWD/bin/nitrovm"
fi

for n in "${names[@]}"; do
	[[ $summary_only == 0 ]] || break
	case $n in
	eif) cmd=(bash scripts/bench-eif.sh) ;;
	nsm) cmd=(bash scripts/bench-nsm.sh --host-only) ;; # the guest part runs with vsock
	kms) cmd=(bash scripts/bench-kms.sh) ;;
	boot) cmd=(bash scripts/bench-boot.sh) ;;
	vsock) cmd=(bash scripts/bench-vsock.sh) ;;
	density) cmd=(bash scripts/bench-density.sh) ;;
	*) echo "bench: unknown benchmark $n (eif nsm kms boot vsock density)" >&2; exit 2 ;;
	esac
	case $n in
	boot | vsock | density) [[ -z ${NITROVM_BENCH_LOCK:-} ]] || cmd=(flock "$NITROVM_BENCH_LOCK" "${cmd[@]}") ;;
	esac
	echo "=== $n: ${cmd[*]}"
	t0=$(date +%s)
	if "${cmd[@]}" 2>&1 | tee "$logs/$n.log"; then status[$n]=ok; else status[$n]="FAILED (exit ${PIPESTATUS[0]})"; fi
	secs[$n]=$(($(date +%s) - t0))
done

# summary: one row per measured ratio, taken from each script's output.
echo
echo "=== summary ($(nproc) CPUs, load average $(cut -d' ' -f1 /proc/loadavg); noisy on a shared machine)"
printf '%-38s %-16s %s\n' "benchmark" "result" "goal"
row() { printf '%-38s %-16s %s\n' "$1" "$2" "$3"; }
# val NAME LINE_RE PREFIX_RE [SUFFIX]: the word after PREFIX_RE on the last line
# of NAME's log matching LINE_RE (trailing comma dropped) plus SUFFIX, or n/a.
val() {
	local v
	v=$(grep -a "$2" "$logs/$1.log" 2>/dev/null | grep -a "$3" | tail -n1 | sed "s/.*$3//" | awk '{sub(/,$/, "", $1); print $1}')
	if [[ -n $v ]]; then echo "$v${4:-}"; else echo "n/a (see log)"; fi
}
for n in "${names[@]}"; do
	case $n in
	eif)
		row "EIF measure 1 GiB / sha384sum" "$(val eif '^ratio:' 'ratio: *')" "<= 1.2x" ;;
	nsm)
		row "NSM attestation docs/s (1 CPU)" "$(val nsm 'nsm in-process' 'attestation ')" "report"
		row "NSM DescribePCR/s (1 CPU)" "$(val nsm 'nsm in-process' 'DescribePCR ')" "report" ;;
	kms)
		row "KMS Decrypt nitrovm / local-kms" "$(val kms '^kms ratio' 'ratio nitrovm-plain\/local-kms ')" ">= 1.0x"
		row "  with Recipient / local-kms plain" "$(val kms '^kms ratio' 'ratio nitrovm-recipient\/local-kms ')" ">= 1.0x" ;;
	boot)
		row "exits-to-init nitrovm / qemu microvm" "$(val boot '^exits-to-init (' 'ratio nitrovm\/qemu ' x)" "<= 0.7x"
		row "  other than port I/O nitrovm / qemu" "$(val boot '^exits-to-init other' 'ratio nitrovm\/qemu ' x)" "report"
		row "boot-to-init nitrovm / qemu microvm" "$(val boot 'boot-to-init' 'ratio nitrovm\/qemu ' x)" "<= 0.7x" ;;
	vsock)
		row "vsock host->guest nitrovm / qemu" "$(val vsock '^vsock h2g' 'ratio nitrovm\/qemu ')" ">= 1.2x"
		row "vsock guest->host nitrovm / qemu" "$(val vsock '^vsock g2h' 'ratio nitrovm\/qemu ')" ">= 1.2x"
		row "  exits during transfers nitrovm / qemu" "$(val vsock '^vsock exits during' 'ratio nitrovm\/qemu ')" "report"
		row "  L1 timer interrupts nitrovm/qemu" "$(val vsock '^L1 interrupts during' 'timer ')" "report"
		row "VMM RSS excl. guest RAM, idle (MiB)" "$(val vsock '^VMM RSS.*(booted' 'nitrovm ')" "<= 8"
		row "  RSS nitrovm/qemu, idle" "$(val vsock '^VMM RSS.*(booted' 'ratio nitrovm\/qemu ')" "report"
		row "VMM RSS excl. guest RAM, after (MiB)" "$(val vsock '^VMM RSS.*(after' 'nitrovm ')" "<= 10"
		row "guest attestation round trips/s" "$(val vsock '^nsm attest from the guest' 'guest: ')" "report"
		row "  guest / in-process (same L1)" "$(val vsock '^nsm attest from the guest' 'ratio guest\/in-process ')" "report"
		row "100 connections at once nitrovm / qemu" "$(val vsock '^vsock 100 connections' 'ratio nitrovm\/qemu ')" "report"
		row "guest DescribePCR round trips/s" "$(val vsock '^nsm describepcr from the guest' 'guest: ')" "report" ;;
	density)
		for k in 8 16; do
			row "density N=$k: up nitrovm / qemu" "$(val density "^density N=$k:" 'ratio nitrovm\/qemu ')" "report"
			row "  guests up nitrovm, qemu" "$(val density "^density N=$k:" 'up (echo) nitrovm '), $(val density "^density N=$k:" 's), qemu ')" "report"
			row "  total VMM RSS nitrovm (MiB)" "$(val density "^density N=$k:" 'total VMM RSS nitrovm ')" "report"
			row "  total VMM RSS nitrovm / qemu" "$(val density "^density N=$k:" 'RSS ratio ')" "report"
			row "  heartbeat connect median (s)" "$(val density "^density N=$k heartbeat" 'nitrovm median ') / $(val density "^density N=$k heartbeat" 'qemu median ')" "report"
			row "  heartbeat connect max (s)" "$(val density "^density N=$k heartbeat" 'nitrovm median [0-9.]* s, max ') / $(val density "^density N=$k heartbeat" 'qemu median [0-9.]* s, max ')" "report"
		done ;;
	esac
done
for n in "${names[@]}"; do
	[[ -z ${status[$n]:-} ]] || printf '%-38s %s in %s s\n' "  [$n]" "${status[$n]}" "${secs[$n]}"
done
echo "(full logs in $logs)"
