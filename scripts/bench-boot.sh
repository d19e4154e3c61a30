#!/usr/bin/env bash
# bench-boot.sh compares boot-to-init time of nitrovm with QEMU's microvm
# machine (-enable-kvm), both run in the same nested L1 VM on the same guest
# kernel + guest/testinit, and prints the times and their ratio. The time is
# from starting the VMM to testinit's final report line, in L1 (uptime).
# QEMU's guest gets reboot=t: its keyboard-controller reset hangs microvm
# when nested.
# Usage: scripts/bench-boot.sh [ROUNDS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH" CGO_ENABLED=0
rounds="${1:-3}"

bash scripts/deps.sh
kernel="$(bash scripts/kernel/build-guest.sh)"
bash scripts/kernel/l1-kernel.sh >/dev/null
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
go build -trimpath -o "$work/nitrovm" ./cmd/nitrovm
go build -trimpath -o "$work/rd/init" ./guest/testinit
(cd "$work/rd" && echo init | cpio -o -H newc --quiet >"$work/initrd.cpio")

cmdline="reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on nitrovm.test=sysinfo"
files=(--file /g/bzImage="$kernel" --file /g/initrd="$work/initrd.cpio"
	--file /usr/bin/qemu-system-x86_64=/usr/bin/qemu-system-x86_64
	--file /usr/share/qemu/bios-microvm.bin=/usr/share/qemu/bios-microvm.bin)
# QEMU is dynamically linked: bring its libraries and loader along.
for lib in $(ldd /usr/bin/qemu-system-x86_64 | awk '/=>/ {print $3} /ld-linux/ {print $1}'); do
	files+=(--file "$lib=$lib")
done

cat >"$work/bench.sh" <<SCRIPT
#!/bin/sh
now() { cut -d' ' -f1 /proc/uptime; }
# measure NAME CMD...: prints "BENCH NAME seconds" at testinit's last line.
measure() {
	name=\$1; shift
	s=\$(now)
	timeout 90 "\$@" </dev/null 2>&1 | while read -r l; do
		case "\$l" in *"NITROVM-TEST done"*) [ -n "\$seen" ] || echo "BENCH \$name \$(echo "\$(now) \$s" | awk '{print \$1-\$2}')"; seen=1 ;; esac
	done
}
i=0
while [ \$i -lt $rounds ]; do
	measure nitrovm nitrovm boot --kernel /g/bzImage --initrd /g/initrd --cmdline "$cmdline" --cpu-count 2 --memory 256
	measure qemu qemu-system-x86_64 -M microvm -enable-kvm -cpu host -m 256 -smp 2 -nodefaults -no-user-config \
		-display none -serial stdio -no-reboot -kernel /g/bzImage -initrd /g/initrd -append "$cmdline reboot=t"
	i=\$((i+1))
done
SCRIPT
chmod +x "$work/bench.sh"
"$work/nitrovm" nested --nitrovm "$work/nitrovm" "${files[@]}" --file /bench.sh="$work/bench.sh" -- /bench.sh |
	tee "$work/out" | grep '^BENCH' >&2 || true
awk '/^BENCH/ { s[$2] += $3; n[$2]++ }
END {
	if (!n["nitrovm"] || !n["qemu"]) { print "bench-boot: missing results"; exit 1 }
	a = s["nitrovm"] / n["nitrovm"]; b = s["qemu"] / n["qemu"]
	printf "boot-to-init (nested, mean of %d): nitrovm %.2f s, qemu microvm %.2f s, ratio nitrovm/qemu %.2f\n", n["nitrovm"], a, b, a / b
}' "$work/out"
