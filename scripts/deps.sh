#!/usr/bin/env bash
# deps.sh installs (from Debian apt) what the nested end-to-end tests and the
# guest kernel build need. Idempotent: a quick no-op when all is installed.
# Run as root (CI) or with sudo available.
set -euo pipefail

pkgs=(
	qemu-system-x86 qemu-system-common # L1 emulator (TCG accel is a module in -common)
	linux-source-6.12                  # guest kernel sources
	make gcc bc bison flex libelf-dev libssl-dev dwarves
	xz-utils cpio kmod busybox-static ca-certificates
)

missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	sudo=(sudo)
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o DPkg::Lock::Timeout=900 -y -q --no-install-recommends)
if ! "${sudo[@]}" apt-get "${apt_opts[@]}" install "${missing[@]}" >&2; then
	"${sudo[@]}" apt-get -o DPkg::Lock::Timeout=900 -q update >&2
	"${sudo[@]}" apt-get "${apt_opts[@]}" install "${missing[@]}" >&2
fi
