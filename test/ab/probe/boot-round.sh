#!/bin/sh
# In L1: one 4-vCPU boot per VMM (the ab.sh boot workload), full console
# kept; prints each boot's time and the guest's XSAVE lines.
base="reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on nitrovm.test=sysinfo"
now() { cut -d' ' -f1 /proc/uptime; }
s=$(now)
timeout 90 nitrovm boot --kernel /g/bzImage --initrd /g/initrd --cmdline "$base" --cpu-count 4 --memory 256 >/tmp/n.log 2>&1 </dev/null
echo "XS nitrovm rc=$? secs=$(echo "$(now) $s" | awk '{printf "%.1f", $1-$2}')"
s=$(now)
timeout 90 qemu-system-x86_64 -M microvm -enable-kvm -cpu host -m 256 -smp 4 -nodefaults -no-user-config \
	-display none -serial stdio -no-reboot -kernel /g/bzImage -initrd /g/initrd -append "$base reboot=t" >/tmp/q.log 2>&1 </dev/null
echo "XS qemu rc=$? secs=$(echo "$(now) $s" | awk '{printf "%.1f", $1-$2}')"
for f in /tmp/n.log /tmp/q.log; do
	echo "XS $f: $(grep -c 'NITROVM-TEST done' $f) done line(s), $(grep -c 'XSAVE consistency problem' $f) XSAVE consistency dump(s)"
	grep -i 'xsave\|xstate\|x86/fpu' $f | head -8 | sed 's/^/XS   /'
done
