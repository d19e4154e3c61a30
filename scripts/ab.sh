#!/usr/bin/env bash
# ab.sh: A/B reliability harness, nitrovm against QEMU microvm (-enable-kvm
# -cpu host), both run alternately inside the same nested L1 VM on the same
# guest kernel, initrd (guest/testinit) and command line. Run on demand, not
# in CI (see docs/multi-vcpu.md).
#
# Workloads (each run is classified ok / triplefault / hang / panic /
# reset / other):
#   boot     boot to init's report with 4 vCPUs (nitrovm.test=sysinfo):
#            nitrovm boot --kernel vs qemu -kernel.
#   vsock    2 vCPUs, testinit's vsock echo server; from L1 one 64 MiB
#            connection then 100 concurrent 256 KiB connections, SHA-256
#            compared (test/e2e/l1tools echo-check): nitrovm run-enclave
#            --debug-mode (hybrid Unix socket) vs qemu -device
#            vhost-vsock-device (AF_VSOCK to the guest CID).
#   console  2 vCPUs, boot with every kernel message on the serial console
#            (ignore_loglevel initcall_debug, thousands of lines): the
#            console-heavy load of the debug-mode NSM run without the NSM,
#            which QEMU microvm lacks.
#   concurrent  --cc-guests guests (8) of --cc-cpus vCPUs (2) and 128 MiB
#            started at once (TestEnclaveCLI's concurrent part): nitrovm
#            run-enclave --debug-mode (testinit's boot heartbeat, ok when
#            run-enclave returns 0) vs qemu with vhost-vsock-device
#            (vhost-vsock drops the heartbeat dial to CID 3, which times
#            out; ok at testinit's done line). One result line per guest
#            (guest=I).
#
# Every run prints "AB workload=W vmm=V round=N class=C secs=S"; failed
# runs also dump their log tail (nitrovm: SIGUSR1 state dump first) between
# "ABLOG begin" / "ABLOG end" lines. The lines of every session are appended
# to --out, then test/ab/abstat prints the counts and the one-sided Fisher
# exact p-value for "nitrovm fails more often than qemu" over all of --out.
#
# Each session takes the global nested lock (flock /tmp/nitrovm-nested.lock)
# and is bounded by --session-timeout; rounds are split over --sessions.
#
# Usage: scripts/ab.sh [--workloads "boot vsock console"] [--rounds N]
#        [--sessions S] [--out FILE] [--session-timeout 12m] [--cmdline-extra "..."]
#        [--cc-guests 8] [--cc-cpus 2]
# NITROVM_BIN=path tests an existing static nitrovm binary (e.g. one built
# from another commit for a before/after comparison). NITROVM_AB_QEMU: see
# below. NITROVM_AB_RAW=DIR keeps each session's whole L1 console output
# (e.g. an L1 kernel panic that the result file keeps only 60 lines of) as
# DIR/<out's name>.<UTC time>.s<N>.log. NITROVM_AB_KERNEL_LOG=1 adds L1's
# kernel console (nitrovm nested --kernel-log) to that output (its lines
# can interleave with the result lines; use it with NITROVM_AB_RAW).
# L1 knobs: AB_L1_SETUP is a shell command run in L1 before the rounds
# (e.g. 'echo never >/sys/kernel/mm/transparent_hugepage/enabled'),
# AB_NESTED_ARGS extra flags of `nitrovm nested` (e.g. '--cpus 1').
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH" GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" CGO_ENABLED=0

workloads="boot" rounds=10 sessions=1 out="" stimeout=12m extra="" ccn=8 ccc=2
while [[ $# -gt 0 ]]; do
	case $1 in
	--workloads) workloads=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--sessions) sessions=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--session-timeout) stimeout=$2; shift 2 ;;
	--cmdline-extra) extra=$2; shift 2 ;;
	--cc-guests) ccn=$2; shift 2 ;;
	--cc-cpus) ccc=$2; shift 2 ;;
	*) echo "usage: $0 [--workloads \"boot vsock console concurrent\"] [--rounds N] [--sessions S] [--out FILE] [--session-timeout D] [--cmdline-extra S] [--cc-guests N] [--cc-cpus N]" >&2; exit 2 ;;
	esac
done
has() { [[ " $workloads " == *" $1 "* ]]; }

bash scripts/deps.sh >/dev/null
kernel="$(bash scripts/kernel/build-guest.sh)"
bash scripts/kernel/l1-kernel.sh >/dev/null
work="$(mktemp -d "${TMPDIR:-/tmp}/nitrovm-ab.XXXXXX")"
trap 'rm -rf "$work"' EXIT
[[ -n $out ]] || out="ab-$(date -u +%Y%m%dT%H%M%SZ).txt"

bin=${NITROVM_BIN:-$work/nitrovm}
[[ -n ${NITROVM_BIN:-} ]] || go build -trimpath -o "$bin" ./cmd/nitrovm
mkdir -p "$work/rd"
go build -trimpath -o "$work/rd/init" ./guest/testinit
go build -trimpath -o "$work/l1tools" ./test/e2e/l1tools
go build -trimpath -o "$work/abstat" ./test/ab/abstat
(cd "$work/rd" && echo init | cpio -o -H newc --quiet >"$work/initrd.cpio")

base="reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on $extra"
# The vsock run's testinit skips its guest -> parent forward (parent CID 3
# is unreachable through vhost-vsock); nitrovm's guest also answers the
# boot heartbeat run-enclave waits for.
vscmd="$base nitrovm.vsock.forward=0 nitrovm.vsock.timeout=300"
"$bin" build-eif --kernel "$kernel" --cmdline "$vscmd nitrovm.test=heartbeat,vsock-echo" --ramdisk "$work/initrd.cpio" \
	--output "$work/vs.eif" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
# The concurrent run's guests: testinit's boot heartbeat, done, reboot.
"$bin" build-eif --kernel "$kernel" --cmdline "$base nitrovm.test=heartbeat" --ramdisk "$work/initrd.cpio" \
	--output "$work/cc.eif" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }

# The QEMU that runs microvm in L1: the same build as the L1 emulator.
# NITROVM_AB_QEMU names its ELF binary when qemu-system-x86_64 on PATH is a
# wrapper script (e.g. an unpacked, not installed, QEMU). Its microvm
# firmware is looked up the way QEMU's firmware path does.
l2q=${NITROVM_AB_QEMU:-$(command -v qemu-system-x86_64)}
l2fw=
for f in share/qemu/bios-microvm.bin share/seabios/bios-microvm.bin; do
	[[ -z $l2fw && -e $(dirname "$l2q")/../$f ]] && l2fw=$(readlink -f "$(dirname "$l2q")/../$f")
done
[[ -n $l2fw ]] || { echo "ab.sh: no bios-microvm.bin next to $l2q" >&2; exit 1; }
echo "ab.sh: L1 emulator $(qemu-system-x86_64 --version | head -n 1); in L1: $l2q, $l2fw" >&2
files=(--file /g/bzImage="$kernel" --file /g/initrd="$work/initrd.cpio" --file /g/vs.eif="$work/vs.eif" --file /g/cc.eif="$work/cc.eif"
	--file /bin/l1tools="$work/l1tools"
	--file /usr/bin/qemu-system-x86_64="$l2q"
	--file /usr/share/qemu/bios-microvm.bin="$l2fw")
# With SeaBIOS's microvm firmware (QEMU >= 8) -kernel needs the linuxboot
# option ROM too (qboot, 7.2's default, loads the kernel itself).
rom=$(dirname "$l2q")/../share/qemu/linuxboot_dma.bin
[[ -e $rom ]] && files+=(--file /usr/share/qemu/linuxboot_dma.bin="$(readlink -f "$rom")")
# QEMU is dynamically linked: bring its libraries and loader along.
for lib in $(ldd "$l2q" | awk '/=>/ {print $3} /ld-linux/ {print $1}'); do
	files+=(--file "$lib=$lib")
done

per=$(((rounds + sessions - 1) / sessions))
cat >"$work/l1.sh" <<SCRIPT
#!/bin/sh
# Runs in L1 (busybox sh).
export NITROVM_STATE_DIR=/run/nvab
${AB_L1_SETUP:-}
echo "ABINFO thp=\$(cat /sys/kernel/mm/transparent_hugepage/enabled)"
base="$base"
vscmd="$vscmd"
now() { cut -d' ' -f1 /proc/uptime; }
since() { echo "\$(now) \$1" | awk '{printf "%.1f", \$1-\$2}'; }
# result WORKLOAD VMM ROUND CLASS START LOG
result() {
	echo "AB workload=\$1 vmm=\$2 round=\$3 class=\$4 secs=\$(since \$5)"
	# The guest kernel's check of CPUID leaf 0xD against the XCR0 it set:
	# it fails when the emulator lets the guest's XSETBV bypass L1's KVM.
	grep -q "XSAVE consistency problem" "\$6" && echo "ABXSAVE workload=\$1 vmm=\$2 round=\$3 consistency-dump"
	if [ "\$4" != ok ]; then
		echo "ABLOG begin \$1 \$2 \$3 \$4"
		tail -n 400 "\$6"
		# L1's record of the guest's triple faults (SVM SHUTDOWN exits with
		# rip, CR3 and CR2; l1init's trace, the lines nested.EvidenceShell
		# prints in the e2e tests), for either VMM's guest.
		grep -F -e ' kvm_exit: ' -e ' shutdown_cr3: ' /sys/kernel/tracing/trace 2>/dev/null | sed 's/^ */NITROVM-L1-SHUTDOWN /'
		echo "ABLOG end"
	fi
	: >/sys/kernel/tracing/trace 2>/dev/null
}
# classify LOG RC: the class of a boot run from its log and exit status
# (RC 124: we stopped it at the deadline).
classify() {
	if grep -q "NITROVM-TEST done" "\$1"; then echo ok
	elif grep -q "triple fault" "\$1"; then echo triplefault
	elif grep -q "Kernel panic" "\$1"; then echo panic
	elif [ "\$2" = 124 ]; then echo hang
	elif [ "\$2" = 0 ]; then echo reset
	else echo other
	fi
}
# bootrun WORKLOAD VMM ROUND CPUS DEADLINE CMDLINE: one boot to init.
# QEMU's guest gets reboot=t (its keyboard-controller reset hangs microvm
# nested) and -no-reboot, so a triple fault ends it like the final reboot:
# without testinit's done line that is class "reset".
bootrun() {
	log=/tmp/ab.log
	echo "AB-START workload=\$1 vmm=\$2 round=\$3"
	s=\$(now)
	if [ "\$2" = nitrovm ]; then
		nitrovm boot --kernel /g/bzImage --initrd /g/initrd --cmdline "\$6" --cpu-count \$4 --memory 256 >\$log 2>&1 </dev/null &
	else
		qemu-system-x86_64 -M microvm -enable-kvm -cpu host -m 256 -smp \$4 -nodefaults -no-user-config \
			-display none -serial stdio -no-reboot -kernel /g/bzImage -initrd /g/initrd -append "\$6 reboot=t" >\$log 2>&1 </dev/null &
	fi
	pid=\$!
	rc=
	i=0
	while [ \$i -lt \$((\$5 * 5)) ]; do
		if ! kill -0 \$pid 2>/dev/null; then wait \$pid; rc=\$?; break; fi
		# Seen done: give the reboot 10 s, then count it anyway.
		if grep -q "NITROVM-TEST done" \$log && [ \$i -lt \$((\$5 * 5 - 50)) ]; then i=\$((\$5 * 5 - 50)); fi
		sleep 0.2
		i=\$((i + 1))
	done
	if [ -z "\$rc" ]; then
		[ "\$2" = nitrovm ] && kill -USR1 \$pid 2>/dev/null && sleep 2
		kill \$pid 2>/dev/null; sleep 1; kill -9 \$pid 2>/dev/null; wait \$pid 2>/dev/null
		rc=124
	fi
	result "\$1" "\$2" "\$3" "\$(classify \$log \$rc)" "\$s" \$log
}
# vsockrun VMM ROUND: the 64 MiB + 100-connection echo with 2 vCPUs.
vsockrun() {
	echo "AB-START workload=vsock vmm=\$1 round=\$2"
	log=/tmp/ab-vs.log
	: >\$log
	s=\$(now)
	class=ok
	if [ "\$1" = nitrovm ]; then
		ep="--uds /run/ab.sock --port 5005"
		if ! nitrovm run-enclave --eif-path /g/vs.eif --memory 256 --cpu-count 2 --debug-mode --enclave-name ab \
			--vsock-uds /run/ab.sock >>\$log 2>&1 </dev/null; then
			class=other
		fi
		nitrovm console --enclave-name ab >/tmp/ab-vs.con 2>&1 &
		# run-enclave returns at testinit's heartbeat, which comes before
		# its echo server listens: wait for the listen line, as for QEMU
		# below (a CONNECT before it is refused: "no OK line ... EOF").
		i=0
		while [ \$class = ok ] && ! grep -q "vsock-listen" /tmp/ab-vs.con && [ \$i -lt 600 ]; do sleep 0.2; i=\$((i + 1)); done
		[ \$class = ok ] && ! grep -q "vsock-listen" /tmp/ab-vs.con && class=hang
	else
		ep="--cid 7 --port 5005"
		: >/tmp/ab-vs.con
		qemu-system-x86_64 -M microvm -enable-kvm -cpu host -m 256 -smp 2 -nodefaults -no-user-config \
			-display none -serial file:/tmp/ab-vs.con -no-reboot -kernel /g/bzImage -initrd /g/initrd \
			-append "\$vscmd nitrovm.test=vsock-echo reboot=t" -device vhost-vsock-device,guest-cid=7 </dev/null >>\$log 2>&1 &
		qpid=\$!
		i=0
		while ! grep -q "vsock-listen" /tmp/ab-vs.con && [ \$i -lt 600 ]; do sleep 0.2; i=\$((i + 1)); done
		grep -q "vsock-listen" /tmp/ab-vs.con || class=hang
	fi
	if [ \$class = ok ]; then
		for load in "--bytes 64MiB --conns 1" "--bytes 256KiB --conns 100"; do
			timeout 150 l1tools echo-check \$ep \$load >>\$log 2>&1
			rc=\$?
			if [ \$rc != 0 ]; then
				class=hang
				[ \$rc = 124 ] || grep -q "i/o timeout\|deadline" \$log || class=other
				break
			fi
		done
	fi
	if [ "\$1" = nitrovm ]; then
		if [ \$class != ok ]; then
			for p in /proc/[0-9]*; do
				grep -q "supervise" \$p/cmdline 2>/dev/null && kill -USR1 \${p#/proc/} 2>/dev/null
			done
			sleep 2
		fi
		l1tools connect --uds /run/ab.sock --port 5006 >/dev/null 2>&1
		i=0
		while [ "\$(nitrovm describe-enclaves 2>/dev/null)" != "[]" ] && [ \$i -lt 30 ]; do sleep 1; i=\$((i + 1)); done
		nitrovm terminate-enclave --all >/dev/null 2>&1
		cat \$NITROVM_STATE_DIR/logs/*.log >>\$log 2>/dev/null
		rm -f \$NITROVM_STATE_DIR/logs/*.log
	else
		l1tools connect --cid 7 --port 5006 >/dev/null 2>&1
		i=0
		while kill -0 \$qpid 2>/dev/null && [ \$i -lt 30 ]; do sleep 1; i=\$((i + 1)); done
		kill \$qpid 2>/dev/null; wait \$qpid 2>/dev/null
	fi
	cat /tmp/ab-vs.con >>\$log
	grep -q "triple fault" \$log && class=triplefault
	grep -q "Kernel panic" \$log && class=panic
	result vsock "\$1" "\$2" \$class "\$s" \$log
}
# ccrun VMM ROUND: $ccn guests of $ccc vCPUs and 128 MiB started at once
# in this L1; one result per guest. nitrovm: run-enclave, ok when it
# returns 0 (heartbeat answered); a guest still waiting after 120 s gets
# its supervisor a SIGUSR1 dump and its console copied, the supervisor
# dumps again at the 150 s heartbeat timeout. QEMU: ok at testinit's done
# line, stopped after 150 s.
ccrun() {
	echo "AB-START workload=concurrent vmm=\$1 round=\$2"
	W=/tmp/cc
	rm -rf \$W; mkdir -p \$W
	s=\$(now)
	i=1
	while [ \$i -le $ccn ]; do
		if [ "\$1" = nitrovm ]; then
			(nitrovm run-enclave --eif-path /g/cc.eif --memory 128 --cpu-count $ccc --debug-mode --enclave-name cc\$i \\
				--heartbeat-timeout 150 >\$W/r\$i.json 2>\$W/r\$i.err </dev/null; echo "\$? \$(since \$s)" >\$W/r\$i.tmp; mv \$W/r\$i.tmp \$W/r\$i.rc) &
		else
			(timeout -s KILL 150 qemu-system-x86_64 -M microvm -enable-kvm -cpu host -m 128 -smp $ccc -nodefaults -no-user-config \\
				-display none -serial file:\$W/c\$i.log -no-reboot -kernel /g/bzImage -initrd /g/initrd \\
				-append "\$base nitrovm.test=heartbeat reboot=t" -device vhost-vsock-device,guest-cid=\$((10 + i)) \\
				</dev/null >\$W/r\$i.err 2>&1; echo "\$? \$(since \$s)" >\$W/r\$i.tmp; mv \$W/r\$i.tmp \$W/r\$i.rc) &
		fi
		i=\$((i + 1))
	done
	dumped=0
	while [ "\$(ls \$W/r*.rc 2>/dev/null | wc -l)" -lt $ccn ]; do
		n=\$(since \$s); n=\${n%.*}
		if [ "\$1" = nitrovm ] && [ \$n -ge 120 ] && [ \$dumped = 0 ]; then
			echo "ABCC stall after \$n s: \$(ls \$W/r*.rc | wc -l) of $ccn done; load \$(cat /proc/loadavg)"
			for p in /proc/[0-9]*; do
				grep -q "supervise" \$p/cmdline 2>/dev/null && kill -USR1 \${p#/proc/} 2>/dev/null
			done
			for d in \$NITROVM_STATE_DIR/i-*; do
				[ -e \$d/console.log ] && cp \$d/console.log \$W/\$(grep -o '"Name": *"[^"]*"' \$d/*.json 2>/dev/null | head -n 1 | sed 's/.*"\\([^"]*\\)"\$/\\1/').con
			done
			dumped=1
		fi
		[ \$n -lt 200 ] || break
		sleep 1
	done
	sleep 2
	i=1
	while [ \$i -le $ccn ]; do
		set -- "\$1" "\$2" \$(cat \$W/r\$i.rc 2>/dev/null || echo none)
		rc=\$3 secs=\$4
		if [ "\$1" = nitrovm ]; then
			if [ "\$rc" = 0 ]; then c=ok
			elif grep -q "triple fault" \$W/r\$i.err; then c=triplefault
			elif grep -q "anic" \$W/r\$i.err; then c=panic
			elif grep -q "no heartbeat" \$W/r\$i.err; then c=hang
			else c=other
			fi
		else
			if grep -q "NITROVM-TEST done" \$W/c\$i.log; then c=ok
			elif grep -q "Kernel panic" \$W/c\$i.log; then c=panic
			elif [ "\$rc" = 137 ]; then c=hang
			elif [ "\$rc" = 0 ]; then c=reset
			else c=other
			fi
		fi
		echo "AB workload=concurrent vmm=\$1 round=\$2 guest=\$i class=\$c secs=\${secs:-none} rc=\$rc"
		if [ \$c != ok ]; then
			echo "ABLOG begin concurrent \$1 \$2 guest=\$i \$c"
			cat \$W/r\$i.err
			# A console cut off mid-line: the echo ends it, so ABLOG end starts a line.
			[ -e \$W/c\$i.log ] && tail -n 60 \$W/c\$i.log && echo
			[ -e \$W/cc\$i.con ] && tail -n 60 \$W/cc\$i.con && echo
			echo "ABLOG end"
		fi
		i=\$((i + 1))
	done
	if [ "\$1" = nitrovm ]; then
		nitrovm terminate-enclave --all >/dev/null 2>&1
		for l in \$(grep -l 'vm state dump begins' \$NITROVM_STATE_DIR/logs/*.log 2>/dev/null); do
			echo "ABLOG begin concurrent nitrovm \$2 dump \$l"
			grep -v 'level=DEBUG' \$l | tail -n 300
			echo "ABLOG end"
		done
		rm -f \$NITROVM_STATE_DIR/logs/*.log
	fi
}
r=1
while [ \$r -le $per ]; do
	for vmm in nitrovm qemu; do
		$(has boot && echo 'bootrun boot $vmm $r 4 60 "$base nitrovm.test=sysinfo"')
		$(has console && echo 'bootrun console $vmm $r 2 90 "$base ignore_loglevel initcall_debug nitrovm.test=sysinfo"')
		$(has vsock && echo 'vsockrun $vmm $r')
		$(has concurrent && echo 'ccrun $vmm $r')
		:
	done
	r=\$((r + 1))
done
echo "AB session done"
SCRIPT
chmod +x "$work/l1.sh"

# L1's kernel console (all levels) in the session output, for L1 panics.
klog=()
[[ ${NITROVM_AB_KERNEL_LOG:-} == 1 ]] && klog=(--kernel-log)
lock=(flock /tmp/nitrovm-nested.lock)
[[ ${AB_NO_LOCK:-} == 1 ]] && lock=()
for s in $(seq 1 "$sessions"); do
	echo "ab: session $s of $sessions ($per rounds of: $workloads)" >&2
	"${lock[@]}" "$bin" nested ${AB_NESTED_ARGS:-} --timeout "$stimeout" "${klog[@]}" "${files[@]}" --file /ab.sh="$work/l1.sh" -- /ab.sh \
		>"$work/out.$s" 2>&1 || true
	if [[ -n ${NITROVM_AB_RAW:-} ]]; then
		mkdir -p "$NITROVM_AB_RAW"
		cp "$work/out.$s" "$NITROVM_AB_RAW/$(basename "$out").$(date -u +%Y%m%dT%H%M%SZ).s$s.log"
	fi
	tr -d '\r' <"$work/out.$s" | grep -a '^AB \|^ABLOG\|^ab-session' >"$work/lines.$s" || true
	# Keep the logs of failed runs with the results.
	tr -d '\r' <"$work/out.$s" | awk '/^ABLOG begin/ {p=1} p {print} /^ABLOG end/ {p=0} /^AB |^ABXSAVE |^ABCC / {print}' >>"$out"
	# Which emulator, and L1's boot time (nitrovm nested's summary line).
	echo "ABINFO session=$s emulator=\"$(qemu-system-x86_64 --version | head -n 1)\" $(grep -a -o 'boot=[^ ]* total=[^ ]*' "$work/out.$s" | tail -n 1)" >>"$out"
	if ! grep -q '^AB session done' "$work/out.$s"; then
		echo "ab: session $s did not finish; L1 console tail:" >&2
		tail -n 30 "$work/out.$s" >&2
		# A run that started without a result took L1 down (an L1 kernel
		# crash): count it as class l1crash. One cut off by the session
		# timeout is not counted.
		last=$(tr -d '\r' <"$work/out.$s" | grep -a '^AB-START \|^AB workload=' | tail -n 1)
		if grep -q 'nested: timed out' "$work/out.$s"; then
			echo "ab: session $s hit --session-timeout; its unfinished run is not counted" >&2
		elif [[ $last == AB-START* ]]; then
			echo "AB ${last#AB-START } class=l1crash" | tee -a "$out" >&2
			# The log's own result lines are defused so abstat does not count them twice.
			{ echo "ABLOG begin l1crash"; tail -n 60 "$work/out.$s" | tr -d '\r' | sed 's/AB/|AB/g'; echo "ABLOG end"; } >>"$out"
		fi
		echo "AB-SESSION-INCOMPLETE $s" >>"$out"
	fi
	grep -a '^AB ' "$work/lines.$s" >&2 || true
done
echo "== $out" >&2
"$work/abstat" "$out"
