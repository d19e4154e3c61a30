#!/bin/sh
# End-to-end check of the nitro-cli compatible lifecycle, run inside a
# KVM-capable machine (the nested L1) with busybox sh:
#
#   nitrovm nested --file /e2e/lifecycle.sh=internal/enclave/testdata/e2e-lifecycle.sh \
#     --file /e2e/a.eif=A.eif --file /e2e/b.eif=B.eif \
#     -- sh /e2e/lifecycle.sh /e2e/a.eif /e2e/b.eif
#
# A.eif and B.eif are two different EIFs whose init sends the Nitro
# heartbeat and then stays up (guest/init with any long-running command).
# Exits 0 when everything the lifecycle issue asks to show holds.
set -eu
A=$1
B=$2
MEM=${MEM:-256}
N=${CONCURRENT:-8} # concurrent run-enclave calls in the last step
CEIF=${CONCURRENT_EIF:-$A} # the EIF they run
# Their vCPUs each: 2, as a real enclave has, and so that a nested
# emulator's triple fault in one can be proven (docs/nested.md).
CCPUS=${CONCURRENT_CPUS:-2}
# Every run-enclave gives up after HEARTBEAT seconds without the guest's
# heartbeat (guests send it 7-12 s after the start in a nested L1) and its
# supervisor dumps the VM's state into its log, which fail prints: the
# default 180 s outlasted the e2e harness's limit for the whole script.
HB=${HEARTBEAT:-90}
W=$(mktemp -d)
export NITROVM_STATE_DIR=${NITROVM_STATE_DIR:-/run/nitrovm-e2e}
command -v nitro-cli >/dev/null 2>&1 || ln -sf /bin/nitrovm /bin/nitro-cli
fail() {
	echo "FAIL: $*"
	# What the supervisors saw (why an enclave ended), before cleaning up:
	# the end of each log, and every VM state dump whole (its vCPU lines
	# and, nested, the WARNING line the e2e harness classifies).
	echo "== events.log and supervisor logs"
	tail -n 20 "$NITROVM_STATE_DIR/events.log" 2>/dev/null
	for l in "$NITROVM_STATE_DIR"/logs/*.log; do
		[ -e "$l" ] || continue
		echo "== $l"
		sed -n '/msg="vm state dump begins"/,/msg="vm state dump ends"/p' "$l"
		tail -n 15 "$l"
	done
	nitro-cli terminate-enclave --all >/dev/null 2>&1 || true
	exit 1
}
# stuck reports the concurrent run-enclave calls that did not end: the
# goroutines of each one still running (SIGQUIT makes a Go program print
# them on stderr and exit) and of its supervisor's VM (SIGUSR1: a state
# dump in its log), then every call's status and stderr.
stuck() {
	for p in /proc/[0-9]*; do
		set -f
		set -- $(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)
		set +f
		a0=${1-}
		case "${a0##*/}-${2-}" in
		nitro-cli-run-enclave | nitrovm-run-enclave)
			echo "== SIGQUIT to ${p#/proc/} ($(cut -d' ' -f3 "$p/stat" 2>/dev/null) $(cat "$p/wchan" 2>/dev/null)): $*"
			kill -QUIT "${p#/proc/}" 2>/dev/null || true
			;;
		nitrovm-supervise | nitro-cli-supervise)
			echo "== SIGUSR1 to supervisor ${p#/proc/}: $*"
			kill -USR1 "${p#/proc/}" 2>/dev/null || true
			;;
		esac
	done
	sleep 3
	i=1
	while [ $i -le $N ]; do
		echo "== concurrent run $i: status $(cat $W/r$i.rc 2>/dev/null || echo none), stderr:"
		cat $W/r$i.err 2>/dev/null || true
		i=$((i + 1))
	done
}
field() { sed -n "s/.*\"$1\": \"*\([^\",]*\)\"*,*$/\1/p" "$2" | head -n1; }

echo "== run two enclaves from different EIFs"
nitro-cli run-enclave --eif-path "$A" --memory "$MEM" --cpu-count 2 --debug-mode --enclave-name dbg --heartbeat-timeout "$HB" >$W/a.json || fail "run A"
nitro-cli run-enclave --eif-path "$B" --memory "$MEM" --cpu-count 2 --enclave-name prod --heartbeat-timeout "$HB" >$W/b.json || fail "run B"
cat $W/a.json $W/b.json
[ "$(field EnclaveID $W/a.json)" != "$(field EnclaveID $W/b.json)" ] || fail "same EnclaveID"
[ "$(field EnclaveCID $W/a.json)" != "$(field EnclaveCID $W/b.json)" ] || fail "same EnclaveCID"

if [ -n "${NITROVM_VCPU_CPUS-}" ]; then
	# The nested harness keeps only vCPU threads off L1's CPU 0: each
	# supervisor's two vCPU threads on NITROVM_VCPU_CPUS, its other threads
	# on every CPU. (KVM's own worker of the VM, a kernel task named
	# kvm-nx-lpage-recovery that the first KVM_RUN starts, takes its vCPU
	# thread's affinity; it is not counted.)
	echo "== vCPU threads on CPUs $NITROVM_VCPU_CPUS only"
	allowed() { awk '/^Cpus_allowed_list:/ { print $2 }' "$1/status"; }
	for j in $W/a.json $W/b.json; do
		pid=$(field ProcessID $j)
		comm=$(cat /proc/$pid/comm)
		all=$(allowed /proc/$pid)
		n=0 other=
		for t in /proc/$pid/task/*; do
			[ "$(cat $t/comm)" = "$comm" ] || continue
			l=$(allowed $t)
			[ "$l" = "$all" ] || { n=$((n + 1)) other=$l; }
		done
		echo "supervisor $pid: $n threads on $other, the others on $all"
		if [ "$n" != 2 ]; then
			for t in /proc/$pid/task/*; do
				echo "  thread ${t##*/} $(cat $t/comm): $(allowed $t) $(cat $t/wchan 2>/dev/null)"
			done
			fail "supervisor $pid: $n threads confined, want its 2 vCPU threads"
		fi
		case ",$all," in *,0,* | *,0-*) ;; *) fail "supervisor $pid runs on $all, not on CPU 0" ;; esac
		case "$other" in 0 | 0,* | 0-*) fail "supervisor $pid: vCPU threads on $other include CPU 0" ;; esac
	done
fi

echo "== describe-enclaves lists both with the EIFs' measurements"
nitro-cli describe-enclaves >$W/d.json
cat $W/d.json
[ "$(grep -c '"EnclaveID"' $W/d.json)" = 2 ] || fail "describe-enclaves does not list 2 enclaves"
grep -q '"State": "RUNNING"' $W/d.json || fail "not RUNNING"
grep -q '"Flags": "DEBUG_MODE"' $W/d.json || fail "no DEBUG_MODE"
grep -q '"Flags": "NONE"' $W/d.json || fail "no NONE"
for e in "$A" "$B"; do
	nitro-cli describe-eif --eif-path "$e" >$W/e.json
	pcr0=$(field PCR0 $W/e.json)
	grep -q "\"PCR0\": \"$pcr0\"" $W/d.json || fail "PCR0 of $e ($pcr0) not in describe-enclaves"
done

echo "== console attaches to the debug enclave, is refused for the other"
nitro-cli console --enclave-name dbg --disconnect-timeout 3 >$W/c.txt || fail "console dbg"
head -c 2000 $W/c.txt
grep -q "Successfully connected to the console." $W/c.txt || fail "console greeting"
[ "$(wc -l <$W/c.txt)" -gt 1 ] || fail "empty console"
set +e
nitro-cli console --enclave-name prod 2>$W/c.err
rc=$?
set -e
cat $W/c.err
[ "$rc" = 44 ] || fail "console prod: status $rc, want 44"

echo "== terminate by name, then --all"
nitro-cli terminate-enclave --enclave-name prod >$W/t.json || fail "terminate prod"
cat $W/t.json
grep -q '"Terminated": true' $W/t.json || fail "terminate output"
[ "$(nitro-cli describe-enclaves | grep -c '"EnclaveID"')" = 1 ] || fail "prod still listed"
nitro-cli terminate-enclave --all >$W/t.json || fail "terminate --all"
cat $W/t.json
[ "$(nitro-cli describe-enclaves)" = "[]" ] || fail "enclaves left after --all"

echo "== $N concurrent run-enclave calls"
i=1
while [ $i -le $N ]; do
	# "|| rc=$?": under set -e a failed call would end the subshell before
	# it wrote its status, and the wait below would run to its limit.
	(
		rc=0
		nitro-cli run-enclave --eif-path "$CEIF" --memory "$MEM" --cpu-count "$CCPUS" --heartbeat-timeout "$HB" >$W/r$i.json 2>$W/r$i.err || rc=$?
		echo $rc >$W/r$i.tmp
		mv $W/r$i.tmp $W/r$i.rc
	) &
	i=$((i + 1))
done
wait
# Some shells' wait returns early; each run writes its status file last.
# run-enclave gives up HB + 60 s after its start at the latest.
n=0
while [ "$(ls $W/r*.rc 2>/dev/null | wc -l)" -lt $N ]; do
	n=$((n + 1))
	[ $n -le $((HB + 90)) ] || {
		stuck
		fail "concurrent runs did not finish"
	}
	sleep 1
done
i=1
while [ $i -le $N ]; do
	[ "$(cat $W/r$i.rc)" = 0 ] || { cat $W/r$i.err; fail "concurrent run $i"; }
	field EnclaveID $W/r$i.json >>$W/ids
	field EnclaveCID $W/r$i.json >>$W/cids
	field EnclaveName $W/r$i.json >>$W/names
	i=$((i + 1))
done
for f in $W/ids $W/cids $W/names; do
	[ "$(sort -u $f | wc -l)" = $N ] || { cat $f; fail "duplicates in $f"; }
done
[ "$(nitro-cli describe-enclaves | grep -c '"EnclaveID"')" = $N ] || fail "describe-enclaves does not list $N"
nitro-cli terminate-enclave --all >/dev/null || fail "terminate --all ($N)"
echo "PASS: lifecycle e2e"
