# l1qemu.sh is sourced by the nested benchmarks. l1_qemu_files appends to
# the caller's array "files" the `nitrovm nested --file` arguments that put
# this host's qemu-system-x86_64 into L1: the binary, its microvm firmware
# (Debian's QEMU 10 keeps bios-microvm.bin in seabios' directory; it goes
# where L1's QEMU looks), the linuxboot_dma.bin option ROM that -kernel
# needs with that firmware, and, QEMU being dynamically linked, its shared
# libraries and loader.
l1_qemu_files() {
	local f fw=
	for f in /usr/share/qemu/bios-microvm.bin /usr/share/seabios/bios-microvm.bin; do
		[[ -z $fw && -e $f ]] && fw=$(readlink -f "$f")
	done
	[[ -n $fw ]] || { echo "$0: no bios-microvm.bin in /usr/share/qemu or /usr/share/seabios" >&2; return 1; }
	files+=(--file /usr/bin/qemu-system-x86_64=/usr/bin/qemu-system-x86_64
		--file /usr/share/qemu/bios-microvm.bin="$fw"
		--file /usr/share/qemu/linuxboot_dma.bin="$(readlink -f /usr/share/qemu/linuxboot_dma.bin)")
	for f in $(ldd /usr/bin/qemu-system-x86_64 | awk '/=>/ {print $3} /ld-linux/ {print $1}'); do
		files+=(--file "$f=$f")
	done
}
