#!/usr/bin/env bash
# bench-density.sh: how many enclaves one host packs. In one nested L1
# session, for each N (default 8 and 16) it starts N guests of 128 MiB and
# 1 vCPU at once, first with nitrovm (run-enclave, one supervisor each),
# then with QEMU microvm + vhost-vsock, on the same kernel and guest
# program (test/bench/guestbench), and reports
#
#   up     seconds from the first start until every guest answered an echo
#          (an empty transfer to guest port 5100 that returns the byte
#          count); for nitrovm also until every heartbeat arrived (each
#          run-enclave returns after its enclave's heartbeat);
#   ok     how many of the N guests came up (heartbeat and echo; QEMU's
#          guests send their heartbeat to L1, CID 2, where hostbench
#          answers it as nitrovm's supervisor does for an enclave; a guest
#          gets 180 s for its heartbeat and then 120 s for its echo, so
#          one guest the nested emulator breaks costs minutes, not the
#          session): "up" is then the time until the last guest that came
#          up did, and the ratio line says how many did;
#   rss    total RSS of all VMM processes, guest RAM mappings left out;
#   cpu    L1 CPU seconds all VMM processes used until every guest was up
#          (after the echoes): their guests' vCPU threads and all other
#          threads (device, runtime and main-loop threads);
#   connect how long each guest's heartbeat connect took by its own clock
#          (median, max, how many over Linux's 2 s connect timeout), from
#          the guests' consoles: nitrovm's enclaves run with --debug-mode
#          to keep theirs, QEMU writes its serial port to a file; the
#          guests write the same console either way.
#
# Prints BENCH lines and one ratio line per N.
# Usage: scripts/bench-density.sh [N...]   NITROVM_BIN=path uses that binary;
# NITROVM_DENSITY_ORDER="qemu nitrovm" starts each N with QEMU's batch.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/l1qemu.sh
export PATH="/usr/local/go/bin:$PATH" GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" CGO_ENABLED=0
ns=("$@")
[[ ${#ns[@]} -gt 0 ]] || ns=(8 16)

bash scripts/deps.sh >/dev/null
kernel="$(bash scripts/kernel/build-guest.sh)"
bash scripts/kernel/l1-kernel.sh >/dev/null
work="$(mktemp -d "${TMPDIR:-/tmp}/nitrovm-bench-density.XXXXXX")"
trap 'rm -rf "$work"' EXIT
bin=${NITROVM_BIN:-$work/nitrovm}
[[ -n ${NITROVM_BIN:-} ]] || go build -trimpath -o "$bin" ./cmd/nitrovm
mkdir -p "$work/rd"
go build -trimpath -o "$work/rd/init" ./test/bench/guestbench
go build -trimpath -o "$work/hostbench" ./test/bench/hostbench
(cd "$work/rd" && echo init | cpio -o -H newc --quiet >"$work/initrd.cpio")
cmdline="reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on"
"$bin" build-eif --kernel "$kernel" --cmdline "$cmdline bench.nsm=0" --ramdisk "$work/initrd.cpio" \
	--output "$work/bench.eif" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
files=(--file /g/bench.eif="$work/bench.eif" --file /g/bzImage="$kernel" --file /g/initrd="$work/initrd.cpio"
	--file /bin/hostbench="$work/hostbench")
l1_qemu_files

mem=128
# NITROVM_DENSITY_ORDER="qemu nitrovm" runs QEMU's batch first in each
# L1 session, to tell a freshly booted L1's share of a slow first batch
# from the VMM's.
order=${NITROVM_DENSITY_ORDER:-nitrovm qemu}
case $order in "nitrovm qemu" | "qemu nitrovm") ;; *) echo "bench-density: NITROVM_DENSITY_ORDER must be \"nitrovm qemu\" or \"qemu nitrovm\"" >&2; exit 2 ;; esac
cat >"$work/l1.sh" <<SCRIPT
#!/bin/sh
export NITROVM_STATE_DIR=/run/nvdensity
now() { cut -d' ' -f1 /proc/uptime; }
since() { echo "\$(now) \$1" | awk '{printf "%.2f", \$1-\$2}'; }
# last START: seconds from START until the last guest that came up did
# (each wrote its uptime to /tmp/up/I).
last() { cat /tmp/up/* 2>/dev/null | awk -v s="\$1" '\$1 > m { m = \$1 } END { printf "%.2f", m ? m - s : 0 }'; }
# procs COMM: the /proc directories of the processes named COMM.
procs() { for p in /proc/[0-9]*; do [ "\$(cat \$p/comm 2>/dev/null)" = "\$1" ] && echo \$p; done; }
# connects FILE...: the heartbeat connect times (s) guestbench printed on
# the consoles FILE..., sorted, on one line.
connects() { cat "\$@" | tr -d '\\r' | sed -n 's/.*heartbeat: connected in \\([0-9.]*\\) s.*/\\1/p' | sort -n | tr '\\n' ' '; }
# rsssum COMM: total RSS (KiB) of the processes named COMM that map a guest
# RAM region, without the mappings of the guest RAM's size or larger.
rsssum() {
	t=0
	for p in \$(procs "\$1"); do
		k=\$(awk -v g=$((mem * 1024)) '
			/^[0-9a-f]+-[0-9a-f]+ / { skip = 0 }
			/^Size:/ { if (\$2 >= g) { skip = 1; big = 1 } }
			/^Rss:/ { if (!skip) t += \$2 }
			END { print big ? t : 0 }' \$p/smaps 2>/dev/null)
		t=\$((t + \${k:-0}))
	done
	echo \$t
}
# cpusum COMM: L1 CPU seconds the processes named COMM have used so far,
# as "vcpu_s=A other_s=B": A the busiest thread of each (its guest's vCPU,
# as every guest has one), B all their other threads (/proc/PID/task/TID/
# schedstat, first field: nanoseconds on a CPU).
cpusum() {
	for p in \$(procs "\$1"); do
		cat \$p/task/*/schedstat 2>/dev/null | awk '{ t += \$1; if (\$1 > m) m = \$1 } END { print m, t - m }'
	done | awk '{ v += \$1; o += \$2 } END { printf "vcpu_s=%.1f other_s=%.1f", v / 1e9, o / 1e9 }'
}
# run_nitrovm and run_qemu start N guests with one VMM and report (N is \$n).
run_nitrovm() {
	echo "== nitrovm, \$n enclaves"
	s=\$(now)
	i=0
	while [ \$i -lt \$n ]; do
		nitrovm run-enclave --eif-path /g/bench.eif --memory $mem --cpu-count 1 --vsock-uds /run/d\$i.sock \
			--enclave-name d\$n-\$i --heartbeat-timeout 180 --debug-mode >/tmp/run\$i.json 2>&1 || echo "BENCH error run-enclave \$i: \$(tail -c 400 /tmp/run\$i.json | tr '\\n' ' ')" &
		i=\$((i + 1))
	done
	wait
	hb=\$(since \$s)
	# Every supervisor's warnings and errors (a failed run-enclave's cause
	# among them), from the logs that have any.
	for f in \$NITROVM_STATE_DIR/logs/*.log; do
		grep -q 'level=ERROR\\|level=WARN\\|panic\\|fault' \$f 2>/dev/null || continue
		grep 'level=ERROR\\|level=WARN\\|panic\\|fault\\|heartbeat' \$f | tail -n 15 | sed "s|^|BENCH log \${f##*/}: |"
	done
	i=0
	rm -rf /tmp/up; mkdir /tmp/up
	while [ \$i -lt \$n ]; do { hostbench ready --uds /run/d\$i.sock --wait 120s && echo "\$(now)" >/tmp/up/\$i || echo "BENCH error echo \$i"; } & i=\$((i + 1)); done
	wait
	# How long the guests' heartbeat connects took (guest clock), slowest
	# last, from the consoles (--debug-mode keeps them, as QEMU's serial
	# files do; the guests write the same console either way).
	echo "BENCH connect-s-nitrovm-\$n \$(connects \$NITROVM_STATE_DIR/*/console.log)"
	grep -ah 'heartbeat: connect failed' \$NITROVM_STATE_DIR/*/console.log | sed 's/^/BENCH error nitrovm /' || true
	echo "BENCH density-nitrovm-\$n heartbeats_s=\$hb echo_s=\$(last \$s) ok=\$(ls /tmp/up | wc -l) rss_kib=\$(rsssum nitrovm) \$(cpusum nitrovm)"
	i=0
	while [ \$i -lt \$n ]; do hostbench stop --uds /run/d\$i.sock >/dev/null 2>&1 & i=\$((i + 1)); done
	wait
	sleep 2
	nitrovm terminate-enclave --all >/dev/null 2>&1
}
run_qemu() {
	echo "== qemu microvm + vhost-vsock, \$n guests"
	# The guests' heartbeat goes to L1 (CID 2, bench.parent=2), where
	# hostbench answers it as a supervisor does: a guest counts as up only
	# with its heartbeat answered, inside the guest's 2 s connect timeout.
	rm -f /tmp/qemu*.log
	hostbench heartbeat --wait 10m >/tmp/hb.log 2>&1 &
	hbpid=\$!
	s=\$(now)
	i=0
	while [ \$i -lt \$n ]; do
		qemu-system-x86_64 -M microvm -enable-kvm -cpu host -m $mem -smp 1 -nodefaults -no-user-config \
			-display none -serial file:/tmp/qemu\$i.log -no-reboot -kernel /g/bzImage -initrd /g/initrd \
			-append "$cmdline bench.nsm=0 bench.parent=2" -device vhost-vsock-device,guest-cid=\$((100 + i)) </dev/null &
		i=\$((i + 1))
	done
	# (a subshell, so that wait waits for the echoes and not for QEMU)
	rm -rf /tmp/up; mkdir /tmp/up
	( i=0; while [ \$i -lt \$n ]; do { hostbench ready --cid \$((100 + i)) --wait 300s && echo "\$(now)" >/tmp/up/\$i || echo "BENCH error qemu echo \$i"; } & i=\$((i + 1)); done; wait )
	kill \$hbpid 2>/dev/null
	i=0
	while [ \$i -lt \$n ]; do
		grep -q "^BENCH heartbeat cid=\$((100 + i))\$" /tmp/hb.log || { echo "BENCH error qemu heartbeat \$i: \$(grep -a 'guestbench: heartbeat' /tmp/qemu\$i.log | tr -d '\\r')"; rm -f /tmp/up/\$i; }
		i=\$((i + 1))
	done
	# How long the guests' heartbeat connects took (guest clock), slowest last.
	echo "BENCH connect-s-qemu-\$n \$(connects /tmp/qemu*.log)"
	echo "BENCH density-qemu-\$n echo_s=\$(last \$s) ok=\$(ls /tmp/up | wc -l) rss_kib=\$(rsssum qemu-system-x86) \$(cpusum qemu-system-x86)"
	i=0
	while [ \$i -lt \$n ]; do hostbench stop --cid \$((100 + i)) >/dev/null 2>&1 & i=\$((i + 1)); done
	sleep 5
	killall qemu-system-x86_64 2>/dev/null
	wait
}
for n in ${ns[*]}; do
	for vmm in $order; do run_\$vmm; done
done
echo "== l1 done"
SCRIPT
chmod +x "$work/l1.sh"
"$bin" nested --timeout 12m "${files[@]}" --file /bench.sh="$work/l1.sh" -- /bench.sh >"$work/out" 2>&1 || true
grep -a '^BENCH' "$work/out" | tr -d '\r' | tee "$work/bench" || true
if ! grep -q '^BENCH density' "$work/bench" || grep -q '^BENCH error' "$work/bench"; then
	echo "--- L1 console tail:"
	tail -n 30 "$work/out"
fi
awk '
function kv(line, key,   i, f, n) { n = split(line, f, " "); for (i = 1; i <= n; i++) if (index(f[i], key "=") == 1) return substr(f[i], length(key) + 2); return "" }
/^BENCH density-nitrovm-/ { n = substr($2, 17); ne[n] = kv($0, "echo_s"); nh[n] = kv($0, "heartbeats_s"); nr[n] = kv($0, "rss_kib"); nok[n] = kv($0, "ok"); nv[n] = kv($0, "vcpu_s"); no[n] = kv($0, "other_s") }
/^BENCH density-qemu-/ { n = substr($2, 14); qe[n] = kv($0, "echo_s"); qr[n] = kv($0, "rss_kib"); qok[n] = kv($0, "ok"); qv[n] = kv($0, "vcpu_s"); qo[n] = kv($0, "other_s") }
# connect-s lines: each guest heartbeat connect time, sorted.
/^BENCH connect-s-/ {
	split($2, f, "-"); k = NF - 2; over = 0
	for (i = 3; i <= NF; i++) if ($i > 2) over++
	cs[f[4], f[3]] = k ? sprintf("median %.2f s, max %.2f s, %d of %d over 2 s", $(3 + int((k - 1) / 2)), $NF, over, k) : "none"
}
END {
	for (n in ne) if (n in qe && nv[n] != "" && qv[n] != "") printf "density N=%d L1 CPU until up: nitrovm vCPUs %.1f s, other threads %.1f s; qemu vCPUs %.1f s, other threads %.1f s; other-thread ratio nitrovm/qemu %.2fx\n", n, nv[n], no[n], qv[n], qo[n], qo[n] ? no[n] / qo[n] : 0
	for (n in ne) if ((n, "nitrovm") in cs && (n, "qemu") in cs) printf "density N=%d heartbeat connect (guest clock): nitrovm %s; qemu %s\n", n, cs[n, "nitrovm"], cs[n, "qemu"]
	for (n in ne) if (n in qe) printf "density N=%d: up (echo) nitrovm %d/%d in %.1f s (run-enclave returned %.1f s), qemu %d/%d in %.1f s, ratio nitrovm/qemu %.2fx, total VMM RSS nitrovm %.1f MiB, qemu %.1f MiB, RSS ratio %.2fx\n", n, nok[n], n, ne[n], nh[n], qok[n], n, qe[n], qe[n] ? ne[n] / qe[n] : 0, nr[n] / 1024, qr[n] / 1024, qr[n] ? nr[n] / qr[n] : 0
}' "$work/bench"
