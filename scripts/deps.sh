#!/usr/bin/env bash
# deps.sh installs (from Debian apt) what the nested end-to-end tests and the
# guest kernel build need. Idempotent: a quick no-op when all is installed.
# Run as root (CI) or with sudo available.
#
# Nested mode wants QEMU >= 8.2 as the L1 emulator (docs/nested.md): older
# TCG does not intercept a nested guest's XSETBV, and multi-vCPU nested
# guests failed more often under Debian 12's QEMU 7.2 (docs/multi-vcpu.md).
# On Debian 12 (bookworm) QEMU therefore comes from bookworm-backports,
# whose apt source is added (once) as
# /etc/apt/sources.list.d/nitrovm-bookworm-backports.sources.
# NITROVM_DEPS_DRY_RUN=1 prints the apt commands instead of running them.
set -euo pipefail

pkgs=(
	linux-source-6.12 # guest kernel sources
	make gcc bc bison flex libelf-dev libssl-dev dwarves
	xz-utils cpio kmod busybox-static ca-certificates
)
# The L1 emulator (on QEMU 7.2 the TCG accelerator is a module in -common).
qemu_pkgs=(qemu-system-x86 qemu-system-common)
qemu_min=1:8.2

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
for p in "${pkgs[@]}"; do
	installed "$p" || missing+=("$p")
done
qemu_missing=()
for p in "${qemu_pkgs[@]}"; do
	if ! installed "$p" || ! dpkg --compare-versions "$(dpkg-query -W -f='${Version}' "$p")" ge "$qemu_min"; then
		qemu_missing+=("$p")
	fi
done
if [ ${#missing[@]} -eq 0 ] && [ ${#qemu_missing[@]} -eq 0 ]; then
	exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	sudo=(sudo)
fi
if [ "${NITROVM_DEPS_DRY_RUN:-}" = 1 ]; then
	sudo=(echo "deps.sh would run:" "${sudo[@]}")
fi
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o DPkg::Lock::Timeout=900 -y -q --no-install-recommends)
update() { "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=900 -q update >&2; }
apt_install() { # apt_install [apt-get options] packages...
	if ! "${sudo[@]}" apt-get "${apt_opts[@]}" install "$@" >&2; then
		update
		"${sudo[@]}" apt-get "${apt_opts[@]}" install "$@" >&2
	fi
}

if [ ${#missing[@]} -gt 0 ]; then
	echo "deps.sh: installing ${missing[*]}" >&2
	apt_install "${missing[@]}"
fi
if [ ${#qemu_missing[@]} -gt 0 ]; then
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	qemu_opts=()
	if [ "$codename" = bookworm ]; then
		list=/etc/apt/sources.list.d/nitrovm-bookworm-backports.sources
		if ! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
			echo "deps.sh: adding bookworm-backports as $list" >&2
			src=$(printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm-backports' \
				'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg')
			if [ "${NITROVM_DEPS_DRY_RUN:-}" = 1 ]; then
				printf 'deps.sh would write %s:\n%s\n' "$list" "$src"
			else
				printf '%s\n' "$src" | "${sudo[@]}" tee "$list" >/dev/null
			fi
			update
		fi
		qemu_opts=(-t bookworm-backports)
	fi
	echo "deps.sh: installing ${qemu_pkgs[*]} (QEMU >= ${qemu_min#1:})" >&2
	apt_install "${qemu_opts[@]}" "${qemu_pkgs[@]}"
fi
