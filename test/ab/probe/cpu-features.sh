#!/bin/sh
# L1 probe for test/ab/probe/run.sh.
echo "XS L1 flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -x 'xsave\|osxsave\|avx\|avx2\|xsaveopt\|xsavec\|xsaves\|pku\|fxsr' | tr '\n' ' ')"
dmesg | grep -i 'x86/fpu\|xsave' | head -8 | sed 's/^/XS L1 dmesg: /'
base="reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on nitrovm.test=sysinfo"
timeout 90 nitrovm boot --kernel /g/bzImage --initrd /g/initrd --cmdline "$base" --cpu-count 1 --memory 256 >/tmp/n.log 2>&1 </dev/null
echo "XS nitrovm rc=$?"
grep -i 'fpu\|xsave\|xstate\|NITROVM-TEST cpu\|flags' /tmp/n.log | head -12 | sed 's/^/XS   /'
head -c 3000 /tmp/n.log | sed 's/^/XS head: /' | head -30
