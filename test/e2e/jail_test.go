//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/nitrovm/nitrovm/internal/vmm"
)

// jailReport prints, for the enclave whose run-enclave JSON is in $1,
// what the issue asks to see of its supervisor: /proc/PID/status lines,
// its mount namespace, its enclave directory's mode and owner, and the
// supervisor's jail log lines. $SD is the state directory.
const jailReport = `jailreport() {
pid=$(sed -n 's/.*"ProcessID": *\([0-9]*\).*/\1/p' "$1"); id=$(sed -n 's/.*"EnclaveID": *"\([^"]*\)".*/\1/p' "$1")
echo "JAIL pid=$pid id=$id"
grep -E '^(Uid|NoNewPrivs|Seccomp|CapInh|CapPrm|CapEff|CapBnd|CapAmb):' /proc/$pid/status | tr -s ' \t' ' ' | sed 's/^/JAIL status /'
[ "$(readlink /proc/$pid/ns/mnt)" != "$(readlink /proc/self/ns/mnt)" ] && echo "JAIL mntns=own"
stat -c 'JAIL dir mode=%a uid=%u' "$SD/$id"
grep 'jail:' "$SD/logs/$id.log" | sed 's/^/JAIL log /'
}
`

// TestJail checks issue 15's containment on real enclaves in L1: a root
// run-enclave's supervisor runs seccomp-filtered, without privileges, as
// nobody, in its own mount namespace (on L1's initramfs root, through the
// MS_MOVE+chroot fallback); the seccomp probe kills a supervisor and
// nothing stays reserved; a user in the kvm group runs an enclave without
// root. An enclave of that user whose guest never sends the heartbeat
// (testinit's "stall") fails after --heartbeat-timeout, and its
// supervisor's VM state dump (written to a log under the user's runtime
// directory) reaches the command's output through the harness.
func TestJail(t *testing.T) {
	e := setup(t)
	tools := e.goBuild(t, "./test/e2e/l1tools", "l1tools")
	s := e.newSession(t)
	// The enclaves whose supervisors are inspected stay up until
	// terminate-enclave: with "heartbeat" alone the guest reboots right
	// after it, and its supervisor could be gone before the report reads
	// /proc/PID/status.
	eifPath := s.file(e.testEIF(t, e.guestKernel, "heartbeat,stall"))
	stallEIF := s.file(e.testEIF(t, e.guestKernel, "stall"))
	l1 := s.file(tools)
	run := "nitrovm run-enclave --eif-path " + eifPath + " --memory 256 --cpu-count 2 " + heartbeatFlag
	root := s.boot("jail-root", 240*time.Second, "sh", "-c", jailReport+
		"export SD=/run/e2e-jail NITROVM_STATE_DIR=/run/e2e-jail\n"+
		run+" --enclave-name j1 >/tmp/j1.json || exit 1\njailreport /tmp/j1.json\n"+
		"nitrovm terminate-enclave --all && echo \"JAIL left=$(ls $SD | grep -c enc)\"")
	probe := s.boot("jail-probe", 240*time.Second, "sh", "-c",
		"export SD=/run/e2e-jail NITROVM_STATE_DIR=/run/e2e-jail\n"+
			"NITROVM_SECCOMP_PROBE=1 "+run+" --enclave-name probe; echo \"JAIL probe rc=$?\"\n"+
			"echo \"JAIL describe=$(nitrovm describe-enclaves | tr -d ' \\n')\"; echo \"JAIL left=$(ls $SD | grep -c enc)\"\n"+
			"grep -h 'sysinfo' $SD/logs/*.log | sed 's/^/JAIL log /'; dmesg | grep -i 'type=1326\\|seccomp' | tail -n 2 | sed 's/^/JAIL kernel /'")
	const user = "1000 1000,995"
	as := l1 + " runas " + user + " HOME=/run/user/1000 XDG_RUNTIME_DIR=/run/user/1000 "
	nonroot := s.boot("jail-nonroot", 240*time.Second, "sh", "-c", jailReport+
		"chmod a+rx /e2e && chmod a+r "+eifPath+" && chgrp 995 /dev/kvm && chmod 0660 /dev/kvm && mkdir -p /run/user/1000 && chown 1000:1000 /run/user/1000 && chmod 0700 /run/user/1000 || exit 1\n"+
		"export SD=/run/user/1000/nitrovm\n"+
		as+run+" --enclave-name nr >/tmp/nr.json || exit 1\njailreport /tmp/nr.json\n"+
		as+"nitrovm terminate-enclave --all && echo \"JAIL left=$(ls $SD | grep -c enc)\"")
	stall := s.boot("jail-stall", 120*time.Second, "sh", "-c", "chmod a+r "+stallEIF+" || exit 1\n"+
		"exec "+as+"nitrovm run-enclave --eif-path "+stallEIF+" --memory 256 --cpu-count 2 --heartbeat-timeout 20 --enclave-name stall")
	s.run()

	jail := func(b *bootRun) map[string]bool {
		out := map[string]bool{}
		for _, l := range strings.Split(b.output, "\n") {
			if i := strings.Index(l, "JAIL "); i >= 0 {
				l = strings.TrimSpace(l[i+len("JAIL "):])
				out[l] = true
				t.Logf("%s: %s", b.name, l)
			}
		}
		return out
	}
	check := func(b *bootRun, want ...string) {
		got := jail(b)
		for _, w := range want {
			if !got[w] {
				t.Errorf("%s: no %q; output:\n%s", b.name, w, b.output)
			}
		}
	}
	zero := "0000000000000000"
	root.wantExit(t, 0)
	check(root, "status Seccomp: 2", "status NoNewPrivs: 1", "status CapEff: "+zero, "status CapPrm: "+zero,
		"status CapInh: "+zero, "status CapAmb: "+zero, "status CapBnd: "+zero,
		"status Uid: 65534 65534 65534 65534", "mntns=own", "dir mode=700 uid=65534", "left=0")
	probe.wantExit(t, 0)
	check(probe, "describe=[]", "left=0")
	if !strings.Contains(probe.output, "probe rc=") || strings.Contains(probe.output, "probe rc=0") {
		t.Errorf("probe: run-enclave must fail; output:\n%s", probe.output)
	}
	if !strings.Contains(probe.output, "calling sysinfo(2)") || strings.Contains(probe.output, "sysinfo(2) returned") {
		t.Errorf("probe: want the probe announced and never returning; output:\n%s", probe.output)
	}
	// Exit 36 is nitro-cli's E36 (enclave boot failure).
	stall.wantExit(t, 36)
	for _, w := range []string{"no heartbeat within 20s", "e2e: supervisor log /run/user/1000/nitrovm/logs/",
		vmm.DumpBeginsMsg, "vcpu 0 mp_state=", "vcpu 1 mp_state=", "last ", vmm.DumpEndsMsg} {
		if !strings.Contains(stall.output, w) {
			t.Errorf("jail-stall: no %q; output:\n%s", w, stall.output)
		}
	}
	nonroot.wantExit(t, 0)
	check(nonroot, "status Seccomp: 2", "status NoNewPrivs: 1", "status CapEff: "+zero,
		"status Uid: 1000 1000 1000 1000", "dir mode=700 uid=1000", "left=0")
}
