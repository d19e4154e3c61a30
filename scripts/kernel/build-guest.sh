#!/usr/bin/env bash
# build-guest.sh builds the nitrovm guest (enclave) kernel from Debian's
# linux-source-6.12: `make tinyconfig` plus scripts/kernel/enclave.config.
# The result is cached under ${NITROVM_CACHE:-$HOME/.cache/nitrovm}/kernel/
# keyed by a hash of the fragment, the recipe version and the source version, so a
# second run is instant; System.map is kept beside the bzImage (to symbolize
# guest rips). Prints the bzImage path on stdout; progress on stderr.
# Usage: scripts/kernel/build-guest.sh [--print-config | --cached]
# (--cached: print the path if built, else fail without building)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${NITROVM_CACHE:-$HOME/.cache/nitrovm}"
frag="$here/enclave.config"
tarball=/usr/src/linux-source-6.12.tar.xz

log() { echo "build-guest: $*" >&2; }

if [ ! -f "$tarball" ]; then
	log "installing dependencies (scripts/deps.sh)"
	bash "$here/../deps.sh"
fi
srcver="$(dpkg-query -W -f='${Version}' linux-source-6.12)"
# Bump recipe when a change to this script changes the kernel it builds.
# 2: System.map is kept beside the bzImage (symbols for a guest rip in a
# triple fault's record; the kernel has no kallsyms).
recipe=2
key="$( { echo "$srcver recipe=$recipe"; cat "$frag"; } | sha256sum | cut -c1-16)"
out="$cache/kernel/guest-$key"
if [ -f "$out/bzImage" ]; then
	[ "${1:-}" = --print-config ] && echo "$out/config" || echo "$out/bzImage"
	exit 0
fi

if [ "${1:-}" = --cached ]; then
	log "not built yet: run scripts/kernel/build-guest.sh"
	exit 1
fi
mkdir -p "$cache/kernel"
exec 9>"$cache/kernel/.build.lock"
log "waiting for the build lock" && flock 9
if [ -f "$out/bzImage" ]; then # built by someone else meanwhile
	[ "${1:-}" = --print-config ] && echo "$out/config" || echo "$out/bzImage"
	exit 0
fi

src="$cache/kernel/src-$srcver"
if [ ! -f "$src/.extracted" ]; then
	log "extracting $tarball"
	rm -rf "$src" && mkdir -p "$src"
	tar -C "$src" --strip-components=1 -xJf "$tarball"
	touch "$src/.extracted"
fi

build="$cache/kernel/build-$key"
rm -rf "$build" && mkdir -p "$build"
# Reproducible output: the same fragment gives the same bzImage (and PCRs).
export KBUILD_BUILD_USER=nitrovm KBUILD_BUILD_HOST=nitrovm
export KBUILD_BUILD_TIMESTAMP="2024-01-01 00:00:00 UTC" KBUILD_BUILD_VERSION=1
mk=(make -C "$src" O="$build" ARCH=x86_64 -s)
log "configuring (tinyconfig + $(basename "$frag"))"
"${mk[@]}" tinyconfig >&2
(cd "$src" && ./scripts/kconfig/merge_config.sh -m -O "$build" "$build/.config" "$frag" >/dev/null)
"${mk[@]}" olddefconfig >&2

missing=0
while IFS= read -r line; do
	case "$line" in CONFIG_*=*) ;; *) continue ;; esac
	if ! grep -qx "$line" "$build/.config"; then
		log "option not applied: $line (got: $(grep "^${line%%=*}=" "$build/.config" || echo unset))"
		missing=1
	fi
done <"$frag"
[ "$missing" = 0 ] || { log "config fragment not fully applied"; exit 1; }

jobs="$(nproc)"
log "compiling bzImage with $jobs jobs (about 5-8 minutes on 2 cores)"
start=$(date +%s)
"${mk[@]}" -j"$jobs" bzImage >&2
log "compiled in $(($(date +%s) - start)) s"

tmp="$out.tmp.$$"
rm -rf "$tmp" && mkdir -p "$tmp"
cp "$build/arch/x86/boot/bzImage" "$tmp/bzImage"
cp "$build/.config" "$tmp/config"
cp "$build/System.map" "$tmp/System.map"
rm -rf "$out" && mv "$tmp" "$out"
rm -rf "$build"
[ "${1:-}" = --print-config ] && echo "$out/config" || echo "$out/bzImage"
