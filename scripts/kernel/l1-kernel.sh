#!/usr/bin/env bash
# l1-kernel.sh fetches Debian's 6.12 cloud kernel (the L1 kernel of the nested
# harness, also used as a stock L2 guest) with `apt-get download` and unpacks
# it under ${NITROVM_CACHE:-$HOME/.cache/nitrovm}/l1/. Idempotent.
# Prints two lines on stdout: the vmlinuz path, then the module directory.
# $cache/l1/current/{vmlinuz,modules} always point at the latest download;
# internal/nested looks there.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${NITROVM_CACHE:-$HOME/.cache/nitrovm}"
l1="$cache/l1"
log() { echo "l1-kernel: $*" >&2; }

if [ -e "$l1/current/vmlinuz" ] && [ -f "$l1/current/modules/modules.dep" ]; then
	readlink -f "$l1/current/vmlinuz"
	readlink -f "$l1/current/modules"
	exit 0
fi
command -v dpkg-deb >/dev/null && command -v apt-get >/dev/null || {
	log "needs Debian's apt-get and dpkg-deb"
	exit 1
}
[ -x /sbin/depmod ] || bash "$here/../deps.sh"

# The meta package names the current signed image; its -unsigned twin has the
# same files without the Secure Boot signature.
signed="$(apt-cache depends linux-image-6.12-cloud-amd64 2>/dev/null |
	sed -n 's/^ *Depends: \(linux-image-6\.12\.[^ ]*-cloud-amd64\)$/\1/p' | head -1)"
if [ -z "$signed" ]; then
	log "no linux-image-6.12-cloud-amd64 in apt; running apt-get update"
	sudo=(); [ "$(id -u)" -ne 0 ] && sudo=(sudo)
	"${sudo[@]}" apt-get -o DPkg::Lock::Timeout=900 -q update >&2
	signed="$(apt-cache depends linux-image-6.12-cloud-amd64 |
		sed -n 's/^ *Depends: \(linux-image-6\.12\.[^ ]*-cloud-amd64\)$/\1/p' | head -1)"
fi
[ -n "$signed" ] || { log "cannot resolve linux-image-6.12-cloud-amd64"; exit 1; }
pkg="$signed-unsigned"
kver="${signed#linux-image-}"
dir="$l1/$kver"

mkdir -p "$l1"
exec 9>"$l1/.lock"
flock 9
if [ ! -f "$dir/.done" ]; then
	tmp="$(mktemp -d "$l1/dl.XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	log "downloading $pkg"
	(cd "$tmp" && apt-get -q download "$pkg" >&2)
	mkdir -p "$tmp/root"
	dpkg-deb -x "$tmp"/*.deb "$tmp/root"
	# The package ships no modules.dep (postinst makes it); the harness reads it.
	/sbin/depmod -b "$tmp/root" "$kver"
	rm -rf "$dir"
	mv "$tmp/root" "$dir"
	touch "$dir/.done"
fi
ln -sfn "boot/vmlinuz-$kver" "$dir/vmlinuz"
ln -sfn "lib/modules/$kver" "$dir/modules"
ln -sfn "$kver" "$l1/current.tmp" && mv -T "$l1/current.tmp" "$l1/current"
readlink -f "$l1/current/vmlinuz"
readlink -f "$l1/current/modules"
