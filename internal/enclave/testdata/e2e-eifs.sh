#!/bin/sh
# Builds the two EIFs e2e-lifecycle.sh needs into OUTDIR: guest/init as
# /init, and a user ramdisk whose command (static busybox) prints a line
# every 2 s forever, "enclave-a-alive" or "enclave-b-alive", so the two EIFs
# measure differently.
#
#   sh internal/enclave/testdata/e2e-eifs.sh NITROVM BZIMAGE OUTDIR
#
# Run from the repository root; needs go, cpio and /bin/busybox (static).
set -eu
NITROVM=$1
BZIMAGE=$2
OUT=$3
mkdir -p "$OUT"
W=$(mktemp -d)
CGO_ENABLED=0 GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" go build -trimpath -ldflags='-s -w' -o "$W/rd0/init" ./guest/init
mkdir -p "$W/rd0/dev"
(cd "$W/rd0" && find . | cpio -o -H newc --quiet >"$W/rd0.cpio")
for x in a b; do
	r="$W/rd1$x"
	mkdir -p "$r/rootfs/bin" "$r/rootfs/dev" "$r/rootfs/proc" "$r/rootfs/sys" "$r/rootfs/run" "$r/rootfs/tmp" "$r/rootfs/var"
	cp /bin/busybox "$r/rootfs/bin/busybox"
	printf '/bin/busybox\nsh\n-c\nwhile true; do echo enclave-%s-alive; sleep 2; done\n' $x >"$r/cmd"
	printf 'PATH=/bin\n' >"$r/env"
	(cd "$r" && find . | cpio -o -H newc --quiet >"$W/rd1$x.cpio")
	"$NITROVM" build-eif --kernel "$BZIMAGE" --name $x --output "$OUT/$x.eif" \
		--cmdline "console=ttyS0 reboot=k panic=30 pci=off nomodules i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on" \
		--ramdisk "$W/rd0.cpio" --ramdisk "$W/rd1$x.cpio" >/dev/null
done
rm -rf "$W"
echo "$OUT/a.eif $OUT/b.eif"
