#!/usr/bin/env bash
# run.sh: one nested L1 per emulator, each running an L1 probe script:
#   boot-round.sh     one 4-vCPU boot per VMM (nitrovm, QEMU microvm) with
#                     its time and the guest's x86/fpu (XSAVE) lines
#   cpu-features.sh   L1's XSAVE-related CPU flags and fpu log, and a
#                     1-vCPU nitrovm guest's fpu lines
# Usage: test/ab/probe/run.sh PROBE [EMULATOR_DIR...]
# Each EMULATOR_DIR holds bin/qemu-system-x86_64 (a wrapper is fine) and
# usr/bin/qemu-system-x86_64 (the ELF binary run in L1), e.g. /opt/qemu10;
# "system" means /usr/bin. Default: system. Takes the nested lock per L1.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export PATH="/usr/local/go/bin:$PATH" GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" CGO_ENABLED=0
probe=$1; shift
[[ -f test/ab/probe/$probe ]] || { echo "run.sh: no probe $probe" >&2; exit 2; }
[[ $# -gt 0 ]] || set -- system
kernel="$(bash scripts/kernel/build-guest.sh)"
work="$(mktemp -d "${TMPDIR:-/tmp}/nitrovm-probe.XXXXXX")"
trap 'rm -rf "$work"' EXIT
go build -trimpath -o "$work/nitrovm" ./cmd/nitrovm
mkdir -p "$work/rd"
go build -trimpath -o "$work/rd/init" ./guest/testinit
(cd "$work/rd" && echo init | cpio -o -H newc --quiet >"$work/initrd.cpio")
for e in "$@"; do
	if [[ $e == system ]]; then P=$PATH l2q=/usr/bin/qemu-system-x86_64 share=/usr/share
	else P=$e/bin:$PATH l2q=$e/usr/bin/qemu-system-x86_64 share=$e/usr/share; fi
	fw=
	for f in qemu/bios-microvm.bin seabios/bios-microvm.bin; do
		[[ -z $fw && -e $share/$f ]] && fw=$(readlink -f "$share/$f")
	done
	files=(--file /g/bzImage="$kernel" --file /g/initrd="$work/initrd.cpio" --file /xs.sh="test/ab/probe/$probe"
		--file /usr/bin/qemu-system-x86_64="$l2q" --file /usr/share/qemu/bios-microvm.bin="$fw"
		--file /usr/share/qemu/linuxboot_dma.bin="$share/qemu/linuxboot_dma.bin")
	for lib in $(ldd "$l2q" | awk '/=>/ {print $3} /ld-linux/ {print $1}'); do files+=(--file "$lib=$lib"); done
	echo "== emulator $e ($(PATH=$P qemu-system-x86_64 --version | head -n 1))"
	PATH=$P flock /tmp/nitrovm-nested.lock "$work/nitrovm" nested --timeout 5m "${files[@]}" -- /xs.sh 2>&1 |
		tr -d '\r' | grep -a "^XS\|L1 ready\|L1 run finished" || true
done
