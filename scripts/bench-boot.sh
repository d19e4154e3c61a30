#!/usr/bin/env bash
# bench-boot.sh compares boot-to-init of nitrovm with QEMU's microvm machine
# (-enable-kvm), both run in the same nested L1 VM on the same guest kernel,
# initrd (guest/testinit), vCPU count, memory and command line, and prints
# two ratios:
#   time   from starting the VMM to testinit's report line "NITROVM-TEST
#          hold" (after its sysinfo lines), in L1 (uptime), mean of ROUNDS
#          rounds; noisy on a loaded machine.
#   exits  VM exits until that line, from L1 KVM's own counters for the VMM's
#          VM (debugfs /sys/kernel/debug/kvm/<pid>-<fd>/, the vCPU counters
#          summed over vCPUs) read when the line appears, the same way for
#          both VMMs; mean of ROUNDS rounds. Does not move with machine load.
#          testinit's "hold" check idles 3 s after that line so the VM (and
#          its counters) is still there when they are read: reading them at
#          "done" raced with the reboot that follows it.
# nitrovm's own count (boot --stats, KVM_GET_STATS_FD, at VM end) is shown
# beside it as a cross-check. Also printed: each round's time ratio, and the
# exits other than port I/O (nearly all of which is the polled 16550 console,
# the same guest bytes under both VMMs: docs/benchmarks.md, "Exits to init:
# the console's floor").
# QEMU's guest gets reboot=t: its keyboard-controller reset hangs microvm
# when nested.
# Usage: scripts/bench-boot.sh [ROUNDS]   (default 5)
# NITROVM_BIN=path measures an existing static nitrovm binary.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/l1qemu.sh
export PATH="/usr/local/go/bin:$PATH" GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" CGO_ENABLED=0
rounds="${1:-5}"

bash scripts/deps.sh
kernel="$(bash scripts/kernel/build-guest.sh)"
bash scripts/kernel/l1-kernel.sh >/dev/null
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [[ -n ${NITROVM_BIN:-} ]]; then cp "$NITROVM_BIN" "$work/nitrovm"; else go build -trimpath -o "$work/nitrovm" ./cmd/nitrovm; fi
go build -trimpath -o "$work/rd/init" ./guest/testinit
(cd "$work/rd" && echo init | cpio -o -H newc --quiet >"$work/initrd.cpio")

cmdline="reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on nitrovm.test=sysinfo,hold"
files=(--file /g/bzImage="$kernel" --file /g/initrd="$work/initrd.cpio")
l1_qemu_files

cat >"$work/bench.sh" <<SCRIPT
#!/bin/sh
now() { cut -d' ' -f1 /proc/uptime; }
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
stats=
nitrovm boot --help 2>&1 | grep -q -- --stats && stats=--stats
# exits COMM NAME: "BENCH exits-NAME vms=N exits=N io_exits=N ..." from the
# KVM debugfs directories of the running process COMM (a VM's directory is
# <tid>-<fd>, named after the thread that created it: any thread of a Go
# program), summed over its VMs, one line per measurement. A directory whose
# exits counter is 0 (a VM that never ran a vCPU, or one whose counters are
# not there) is left out: averaging it in as a round made the ratio wrong.
exits() {
	for pid in \$(pidof \$1); do
		for t in /proc/\$pid/task/*; do ls -d /sys/kernel/debug/kvm/\${t##*/}-* 2>/dev/null; done
	done | sort -u | {
		vms=0 sums=
		while read -r d; do
			[ -r \$d/exits ] && [ "\$(cat \$d/exits)" != 0 ] || continue
			vms=\$((vms + 1))
			for f in exits io_exits mmio_exits halt_exits irq_window_exits irq_exits insn_emulation signal_exits; do
				[ -r \$d/\$f ] && sums="\$sums \$f=\$(cat \$d/\$f)"
			done
		done
		[ \$vms -gt 0 ] && echo "BENCH exits-\$2 vms=\$vms\$sums" | awk '{ for (i = 4; i <= NF; i++) { split(\$i, kv, "="); s[kv[1]] += kv[2]; if (!(kv[1] in seen)) { seen[kv[1]] = 1; o[++n] = kv[1] } } l = \$1 " " \$2 " " \$3; for (i = 1; i <= n; i++) l = l " " o[i] "=" s[o[i]]; print l }'
	}
}
# measure NAME COMM CMD...: prints "BENCH NAME seconds" and the exit counts
# at testinit's hold line.
measure() {
	name=\$1 comm=\$2; shift 2
	s=\$(now)
	timeout 90 "\$@" </dev/null 2>&1 | while read -r l; do
		case "\$l" in
		*"NITROVM-TEST hold"*) [ -n "\$seen" ] || { t=\$(now); exits \$comm \$name; echo "BENCH \$name \$(echo "\$t \$s" | awk '{print \$1-\$2}')"; }; seen=1 ;;
		'{"reason":'*) echo "BENCHSTATS \$name \$l" ;;
		esac
	done
}
i=0
while [ \$i -lt $rounds ]; do
	measure nitrovm nitrovm nitrovm boot \$stats --kernel /g/bzImage --initrd /g/initrd --cmdline "$cmdline" --cpu-count 2 --memory 256
	measure qemu qemu-system-x86_64 qemu-system-x86_64 -M microvm -enable-kvm -cpu host -m 256 -smp 2 -nodefaults -no-user-config \\
		-display none -serial stdio -no-reboot -kernel /g/bzImage -initrd /g/initrd -append "$cmdline reboot=t"
	i=\$((i+1))
done
SCRIPT
chmod +x "$work/bench.sh"
"$work/nitrovm" nested --nitrovm "$work/nitrovm" "${files[@]}" --file /bench.sh="$work/bench.sh" -- /bench.sh |
	tr -d '\r' | tee "$work/out" | grep '^BENCH exits\|^BENCH [a-z]* [0-9]' >&2 || true
awk '
function kv(line, key,   i, f, n) { n = split(line, f, " "); for (i = 1; i <= n; i++) if (index(f[i], key "=") == 1) return substr(f[i], length(key) + 2); return "" }
/^BENCH exits-/ { v = substr($2, 7); for (k = 1; k <= nk; k++) e[v, keys[k]] += kv($0, keys[k]); ne[v]++ }
/^BENCH (nitrovm|qemu) [0-9]/ { s[$2] += $3; n[$2]++; if ($2 == "nitrovm") last = $3; else if (last != "") { rounds = rounds sprintf(" %.2f", last / $3); last = "" } }
/^BENCHSTATS nitrovm/ { if (match($0, /"exits":\{[^}]*"exits":[0-9]+/)) { t = substr($0, RSTART, RLENGTH); sub(/.*"exits":/, "", t); se += t; ns++ } }
BEGIN { nk = split("exits io_exits mmio_exits halt_exits irq_window_exits irq_exits insn_emulation signal_exits", keys, " ") }
END {
	if (!n["nitrovm"] || !n["qemu"]) { print "bench-boot: missing results"; exit 1 }
	a = s["nitrovm"] / n["nitrovm"]; b = s["qemu"] / n["qemu"]
	printf "boot-to-init (nested, mean of %d): nitrovm %.2f s, qemu microvm %.2f s, ratio nitrovm/qemu %.2f\n", n["nitrovm"], a, b, a / b
	printf "  per round, nitrovm/qemu:%s\n", rounds
	if (ne["nitrovm"] && ne["qemu"]) {
		for (k = 1; k <= nk; k++) {
			x = e["nitrovm", keys[k]] / ne["nitrovm"]; y = e["qemu", keys[k]] / ne["qemu"]
			line = line sprintf(" %s %.0f/%.0f", keys[k], x, y)
		}
		x = e["nitrovm", "exits"] / ne["nitrovm"]; y = e["qemu", "exits"] / ne["qemu"]
		printf "exits-to-init (L1 KVM counters, mean of %d): nitrovm %.0f, qemu microvm %.0f, ratio nitrovm/qemu %.2f\n", ne["nitrovm"], x, y, x / y
		printf "  by reason, nitrovm/qemu:%s\n", line
		x -= e["nitrovm", "io_exits"] / ne["nitrovm"]; y -= e["qemu", "io_exits"] / ne["qemu"]
		if (y > 0) printf "exits-to-init other than port I/O (nearly all port I/O is the polled console): nitrovm %.0f, qemu microvm %.0f, ratio nitrovm/qemu %.2f\n", x, y, x / y
	} else print "exits-to-init: no KVM debugfs counters in L1"
	if (ns) printf "  nitrovm boot --stats (whole run, to VM end): %.0f exits, mean of %d\n", se / ns, ns
}' "$work/out"
