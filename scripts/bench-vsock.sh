#!/usr/bin/env bash
# bench-vsock.sh: nested (L1) benchmarks of the enclave's devices, in one L1
# session. The guest is test/bench/guestbench as /init of the guest kernel;
# the L1 side is test/bench/hostbench.
#
#   vsock  stream throughput host->guest and guest->host through nitrovm
#          (run-enclave, hybrid vsock Unix socket) and through QEMU microvm
#          with vhost-vsock (AF_VSOCK to the guest CID), same kernel, same
#          guest program, same L1; plus each VMM's RSS excluding guest RAM
#          (smaps, mappings of the guest RAM size left out) when idle and
#          after the run (2 x MIB each way, then 100 connections at once).
#   nsm    attestation documents/s and DescribePCR/s from inside the
#          nitrovm guest (/dev/nsm via hf/nsm), next to the nsm package's Go
#          benchmarks run in the same L1 on one CPU (in-process reference).
#
# The vsock MB/s are the mean over --rounds rounds (default 3) in the same
# L1: round 1 is nitrovm then QEMU with everything above; each further
# round boots each VMM again for the transfers alone, QEMU first in even
# rounds, so that a machine that speeds up or slows down during the
# session does not favour the VMM that ran first. Each round keeps the best
# of --runs transfers per direction.
#
# Prints the BENCH lines and one ratio line per comparison.
# Usage: scripts/bench-vsock.sh [--parts "vsock nsm"] [--mib N] [--runs R] [--rounds N] [--nsm N]
# NITROVM_BIN=path uses an existing static nitrovm binary.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/l1qemu.sh
export PATH="/usr/local/go/bin:$PATH" GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" CGO_ENABLED=0

parts="vsock nsm" mib=32 runs=2 rounds=3 nsmn=200 conns=100
while [[ $# -gt 0 ]]; do
	case $1 in
	--parts) parts=$2; shift 2 ;;
	--mib) mib=$2; shift 2 ;;
	--runs) runs=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--nsm) nsmn=$2; shift 2 ;;
	*) echo "usage: $0 [--parts \"vsock nsm\"] [--mib N] [--runs R] [--rounds N] [--nsm N]" >&2; exit 2 ;;
	esac
done
has() { [[ " $parts " == *" $1 "* ]]; }
has nsm || nsmn=0

bash scripts/deps.sh >/dev/null
kernel="$(bash scripts/kernel/build-guest.sh)"
bash scripts/kernel/l1-kernel.sh >/dev/null
work="$(mktemp -d "${TMPDIR:-/tmp}/nitrovm-bench-vsock.XXXXXX")"
trap 'rm -rf "$work"' EXIT

bin=${NITROVM_BIN:-$work/nitrovm}
[[ -n ${NITROVM_BIN:-} ]] || go build -trimpath -o "$bin" ./cmd/nitrovm
mkdir -p "$work/rd"
go build -trimpath -o "$work/rd/init" ./test/bench/guestbench
go build -trimpath -o "$work/hostbench" ./test/bench/hostbench
go test -c -o "$work/nsm.test" ./nsm
(cd "$work/rd" && echo init | cpio -o -H newc --quiet >"$work/initrd.cpio")
cmdline="reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on"
"$bin" build-eif --kernel "$kernel" --cmdline "$cmdline bench.nsm=$nsmn" --ramdisk "$work/initrd.cpio" \
	--output "$work/bench.eif" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }

files=(--file /g/bench.eif="$work/bench.eif" --file /g/bzImage="$kernel" --file /g/initrd="$work/initrd.cpio"
	--file /bin/hostbench="$work/hostbench" --file /g/nsm.test="$work/nsm.test")
if has vsock; then
	l1_qemu_files
fi

mem=256
cat >"$work/l1.sh" <<SCRIPT
#!/bin/sh
# Runs in L1 (busybox sh). Prints BENCH lines.
export NITROVM_STATE_DIR=/run/nvbench
uds=/run/nvbench.sock
# rss COMM WHEN: "BENCH rss-COMM-WHEN kib=N anon_kib=M pss_kib=P", the RSS
# of the process named COMM that maps the guest RAM, without the mappings of
# the guest RAM's size or larger (M: its anonymous part, N-M: file pages such
# as the program's own text; P: the same mappings' PSS). Then one "smaps"
# line per counted mapping with at least 64 KiB resident.
# kx WHEN: "BENCH kvm-WHEN exits=N io_exits=N ..." from L1 KVM's debugfs
# counters of the running VM (the one directory whose exits are not 0:
# nitrovm's and QEMU's guests run one after the other), summed over vCPUs.
# The difference between two of them counts the exits of the transfers by
# reason, which does not move with the machine's load as MB/s does. Then
# "BENCH l1irq-WHEN LOC=N RES=N CAL=N TLB=N": L1's timer interrupts and
# rescheduling, function-call and TLB-shootdown IPIs so far, summed over
# its CPUs (/proc/interrupts): what the VMM's threads cost L1 besides
# their CPU time (a sleeping thread's timer is an interrupt, and one that
# lands on a CPU running the guest is also an exit).
kx() {
	mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
	for d in /sys/kernel/debug/kvm/*-*; do
		[ -r \$d/exits ] && [ "\$(cat \$d/exits)" != 0 ] || continue
		l="BENCH kvm-\$1"
		for f in exits io_exits mmio_exits halt_exits irq_window_exits irq_exits insn_emulation host_state_reload irq_injections halt_wakeup; do
			[ -r \$d/\$f ] && l="\$l \$f=\$(cat \$d/\$f)"
		done
		echo "\$l"
	done
	awk -v w=\$1 '/^ *(LOC|RES|CAL|TLB):/ { n = 0; for (i = 2; i <= NF && \$i ~ /^[0-9]+\$/; i++) n += \$i; l = l " " substr(\$1, 1, 3) "=" n }
		END { print "BENCH l1irq-" w l }' /proc/interrupts
}
rss() {
	for p in /proc/[0-9]*; do
		[ "\$(cat \$p/comm 2>/dev/null)" = "\$1" ] || continue
		[ "\${p#/proc/}" = 1 ] && continue
		awk -v g=$((mem * 1024)) -v name="\$1-\$2" '
			function flush() { if (m != "" && !skip && r >= 64) maps = maps sprintf("smaps %s %s rss_kib=%d anon_kib=%d thp_kib=%d\n", name, m, r, an, th) }
			/^[0-9a-f]+-[0-9a-f]+ / { flush(); skip = 0; m = \$1 " " \$2 " " (\$6 == "" ? "[anon]" : \$6); r = 0; an = 0; th = 0 }
			/^AnonHugePages:/ { th = \$2 }
			/^Size:/ { if (\$2 >= g) { skip = 1; big = 1 } }
			/^Rss:/ { r = \$2; if (!skip) t += \$2 }
			/^Pss:/ { if (!skip) ps += \$2 }
			/^Anonymous:/ { an = \$2; if (!skip) a += \$2 }
			END { flush(); if (big) printf "BENCH rss-%s kib=%d anon_kib=%d pss_kib=%d\n%s", name, t, a, ps, maps }' \$p/smaps
	done
}
if [ $nsmn -gt 0 ]; then
	echo "== nsm package benchmarks in L1, one CPU"
	/g/nsm.test -test.run '^\$' -test.bench 'Attestation|DescribePCR' -test.cpu 1 -test.benchtime 2s |
		awk '/^Benchmark/ { for (i = 1; i <= NF; i++) if (\$(i+1) == "req/s") print "BENCH nsm-l1-" tolower(substr(\$1, 10)) " per_s=" \$i }'
	hostbench collect --listen \${uds}_5200 --wait 600s >/tmp/nsm.out &
	cpid=\$!
fi
# nv_up / nv_down and qemu_up / qemu_down start and stop each VMM's guest.
nv_up() {
	nitrovm run-enclave --eif-path /g/bench.eif --memory $mem --cpu-count 2 --vsock-uds \$uds \
		--enclave-name bench >/tmp/run.json 2>&1 || { cat /tmp/run.json; echo "BENCH error nitrovm run-enclave"; }
}
nv_down() {
	hostbench stop --uds \$uds || echo "BENCH error nitrovm stop"
	sleep 2
	nitrovm terminate-enclave --all >/dev/null 2>&1
}
qemu_up() {
	# With NITROVM_VCPU_CPUS set (NITROVM_BENCH_PLACEMENT=vcpus), QEMU starts
	# paused and hostbench confines its vCPU threads to those CPUs as
	# nitrovm's are, leaving its other threads free, before the guest runs.
	pin=
	[ -n "\${NITROVM_VCPU_CPUS-}" ] && pin="-S -qmp unix:/tmp/qmp.sock,server=on,wait=off"
	rm -f /tmp/qmp.sock
	qemu-system-x86_64 -M microvm -enable-kvm -cpu host -m $mem -smp 2 -nodefaults -no-user-config \
		-display none -serial file:/tmp/qemu.log -no-reboot -kernel /g/bzImage -initrd /g/initrd \
		-append "$cmdline bench.nsm=0" -device vhost-vsock-device,guest-cid=7 \$pin </dev/null &
	qpid=\$!
	if [ -n "\$pin" ]; then
		hostbench qemu-pin --qmp /tmp/qmp.sock --cpus "\$NITROVM_VCPU_CPUS" || echo "BENCH error qemu-pin"
	fi
	hostbench ready --cid 7 --wait 180s
}
qemu_down() {
	hostbench stop --cid 7 || echo "BENCH error qemu stop"
	i=0
	while kill -0 \$qpid 2>/dev/null && [ \$i -lt 30 ]; do sleep 1; i=\$((i + 1)); done
	kill \$qpid 2>/dev/null
}
echo "smaps L1 transparent_hugepage \$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"
echo "== nitrovm run-enclave"
nv_up
if [ $nsmn -gt 0 ]; then
	wait \$cpid
	cat /tmp/nsm.out
fi
if [ "$(has vsock && echo y)" = y ]; then
	# idle: 5 s after the ready connection ended. The supervisor frees heap
	# and drops start-up pages 200 ms after its last connection ends, and
	# a connection both sides closed can wait up to 2 s for the guest's RST
	# (vsock.ConnShutdownTimeout): read 1 and 3 s after, the idle figure
	# sometimes still had those pages.
	hostbench ready --uds \$uds && sleep 5 && rss nitrovm idle
	kx nitrovm-before
	hostbench vsock --uds \$uds --label nitrovm --mib $mib --runs $runs --conns $conns || echo "BENCH error nitrovm vsock"
	kx nitrovm-after
	sleep 1 # connection buffers are returned 200 ms after the last close.
	rss nitrovm after
fi
nv_down
if [ "$(has vsock && echo y)" = y ]; then
	echo "== qemu microvm + vhost-vsock"
	ls -l /dev/vhost-vsock || echo "BENCH error no /dev/vhost-vsock"
	qemu_up && rss qemu-system-x86 idle
	kx qemu-before
	hostbench vsock --cid 7 --label qemu --mib $mib --runs $runs --conns $conns || { echo "BENCH error qemu vsock"; tail -n 30 /tmp/qemu.log; }
	kx qemu-after
	rss qemu-system-x86 after
	qemu_down
	for r in \$(seq 2 $rounds); do
		for vmm in \$( [ \$((r % 2)) = 0 ] && echo "qemu nitrovm" || echo "nitrovm qemu"); do
			echo "== round \$r: \$vmm"
			if [ \$vmm = nitrovm ]; then
				nv_up
				hostbench ready --uds \$uds && hostbench vsock --uds \$uds --label nitrovm-r\$r --mib $mib --runs $runs --conns 0 ||
					echo "BENCH error nitrovm vsock round \$r"
				nv_down
			else
				qemu_up && hostbench vsock --cid 7 --label qemu-r\$r --mib $mib --runs $runs --conns 0 ||
					echo "BENCH error qemu vsock round \$r"
				qemu_down
			fi
		done
	done
fi
echo "== l1 done"
SCRIPT
chmod +x "$work/l1.sh"

# NITROVM_BENCH_PLACEMENT: "command" (the default) runs the whole L1
# command off L1's CPU 0; "vcpus" keeps only the guests' vCPU threads off
# it (nitrovm nested --only-vcpus-off-cpu0, QEMU's through hostbench
# qemu-pin), so both VMMs' other threads may use CPU 0.
placement=()
case ${NITROVM_BENCH_PLACEMENT:-command} in
command) ;;
vcpus) placement=(--only-vcpus-off-cpu0) ;;
*) echo "bench-vsock: NITROVM_BENCH_PLACEMENT must be command or vcpus" >&2; exit 2 ;;
esac
"$bin" nested --timeout 20m "${placement[@]}" "${files[@]}" --file /bench.sh="$work/l1.sh" -- /bench.sh >"$work/out" 2>&1 || true
grep -a '^BENCH' "$work/out" | tr -d '\r' | tee "$work/bench" || true
grep -a '^smaps ' "$work/out" | tr -d '\r' || true
if ! grep -q '^BENCH' "$work/bench" || grep -q '^BENCH error' "$work/bench"; then
	echo "--- L1 console tail:"
	tail -n 40 "$work/out"
fi

# ratios
awk '
function kv(line, key,   i, f, n) { n = split(line, f, " "); for (i = 1; i <= n; i++) if (index(f[i], key "=") == 1) return substr(f[i], length(key) + 2); return "" }
# The MB/s of every round per VMM and direction: vsock-VMM[-rN]-DIR.
/^BENCH vsock-(nitrovm|qemu)(-r[0-9]+)?-(h2g|g2h) / {
	nf = split($2, f, "-"); key = f[2] SUBSEP f[nf]
	sum[key] += kv($0, "MBps"); cnt[key]++; rounds[key] = rounds[key] sprintf(" %.1f", kv($0, "MBps"))
}
/^BENCH rss-/ { r[$2] = kv($0, "kib"); an[$2] = kv($0, "anon_kib"); ps[$2] = kv($0, "pss_kib") }
/^BENCH vsock-.*-conns / { cs[$2] = kv($0, "s"); cf[$2] = kv($0, "failed"); cr[$2] = kv($0, "retries"); cn = kv($0, "n") }
/^BENCH nsm-/ { n[$2] = kv($0, "per_s") }
/^BENCH l1irq-/ { for (i = 3; i <= NF; i++) { split($i, f, "="); q[$2, f[1]] = f[2] } }
/^BENCH kvm-/ { for (i = 3; i <= NF; i++) { split($i, f, "="); k[$2, f[1]] = f[2]; if (!(f[1] in kseen)) { kseen[f[1]] = 1; keys[++nk] = f[1] } } }
END {
	for (d = 1; d <= 2; d++) {
		dir = d == 1 ? "h2g" : "g2h"; ka = "nitrovm" SUBSEP dir; kb = "qemu" SUBSEP dir
		if (!cnt[ka] || !cnt[kb]) continue
		a = sum[ka] / cnt[ka]; b = sum[kb] / cnt[kb]
		printf "vsock %s (host%sguest), mean of %d/%d rounds: nitrovm %.1f MB/s, qemu vhost-vsock %.1f MB/s, ratio nitrovm/qemu %.2fx (goal >= 1.2); per round nitrovm%s, qemu%s\n", dir, d == 1 ? "->" : "<-", cnt[ka], cnt[kb], a, b, a / b, rounds[ka], rounds[kb]
	}
	a = cs["vsock-nitrovm-conns"]; b = cs["vsock-qemu-conns"]
	if (a != "" && b != "") printf "vsock %d connections at once, 64 KiB each: nitrovm %.2f s (%d failed, %d dials refused and retried after 200 ms), qemu %.2f s (%d failed, %d retried), ratio nitrovm/qemu %.2fx\n", cn, a, cf["vsock-nitrovm-conns"], cr["vsock-nitrovm-conns"], b, cf["vsock-qemu-conns"], cr["vsock-qemu-conns"], a / b
	for (w = 1; w <= 2; w++) {
		when = w == 1 ? "idle" : "after"; a = r["rss-nitrovm-" when]; b = r["rss-qemu-system-x86-" when]
		if (a != "") printf "VMM RSS excluding guest RAM (%s): nitrovm %.1f MiB (anon %.1f, PSS %.1f) (goal <= %d)%s\n", when == "idle" ? "booted, idle" : "after the transfers", a / 1024, an["rss-nitrovm-" when] / 1024, ps["rss-nitrovm-" when] / 1024, when == "idle" ? 8 : 10, b != "" ? sprintf(", qemu %.1f MiB (anon %.1f), ratio nitrovm/qemu %.2fx", b / 1024, an["rss-qemu-system-x86-" when] / 1024, a / b) : ""
	}
	if (("kvm-nitrovm-after", "exits") in k && ("kvm-qemu-after", "exits") in k) {
		line = ""
		for (i = 1; i <= nk; i++) {
			a = k["kvm-nitrovm-after", keys[i]] - k["kvm-nitrovm-before", keys[i]]; b = k["kvm-qemu-after", keys[i]] - k["kvm-qemu-before", keys[i]]
			if (i == 1) { ea = a; eb = b } else line = line sprintf(" %s %d/%d", keys[i], a, b)
		}
		printf "vsock exits during the transfers (L1 KVM counters): nitrovm %d, qemu vhost-vsock %d, ratio nitrovm/qemu %.2fx\n  by reason, nitrovm/qemu:%s\n", ea, eb, eb ? ea / eb : 0, line
	}
	if (("l1irq-nitrovm-after", "LOC") in q && ("l1irq-qemu-after", "LOC") in q) {
		line = ""
		split("LOC timer RES rescheduling CAL function-call TLB TLB-shootdown", names, " ")
		for (i = 1; i < 8; i += 2) {
			a = q["l1irq-nitrovm-after", names[i]] - q["l1irq-nitrovm-before", names[i]]; b = q["l1irq-qemu-after", names[i]] - q["l1irq-qemu-before", names[i]]
			line = line sprintf("%s %s %d/%d", i > 1 ? "," : "", names[i + 1], a, b)
		}
		printf "L1 interrupts during the transfers, nitrovm/qemu:%s\n", line
	}
	split("attest describepcr", ops, " ")
	for (i = 1; i <= 2; i++) {
		o = ops[i]; g = n["nsm-guest-" o]; l = n["nsm-l1-" (o == "attest" ? "attestation" : o)]
		if (g != "") printf "nsm %s from the guest: %.1f/s%s\n", o, g, l != "" ? sprintf(" vs %.1f/s in-process in the same L1 (1 CPU), ratio guest/in-process %.3f", l, g / l) : ""
	}
}' "$work/bench"
