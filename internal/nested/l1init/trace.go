package l1init

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Evidence of L2 triple faults. On an L2 vCPU's SVM SHUTDOWN intercept (a
// triple fault), L1's kvm-amd resets the vCPU before it returns
// KVM_EXIT_SHUTDOWN (arch/x86/kvm/svm/svm.c, shutdown_interception), so
// nitrovm sees only the reset state (rip 0xfff0). Init therefore records
// the guest rip of every SHUTDOWN exit with the kvm:kvm_exit tracepoint,
// filtered in the kernel to that exit, and the vCPU's CR3 then with a
// probe (CR3Event), and after a failed command prints
// the recorded exits and L1's modules as marked lines; package nested
// reads them (nested.L1TripleFault).
const (
	// ShutdownMarker starts a line holding one recorded SHUTDOWN exit as
	// tracefs prints it: "... kvm_exit: vcpu 0 reason shutdown rip 0x...",
	// or the CR3Event line recorded with it.
	ShutdownMarker = "NITROVM-L1-SHUTDOWN"
	// ModuleMarker starts a line holding one line of L1's /proc/modules:
	// "kvm_amd 147456 3 - Live 0xffffffffc0389000" (name, size in bytes,
	// ..., base address; root sees the address).
	ModuleMarker = "NITROVM-L1-MODULE"
	// TraceDir is where init mounts tracefs.
	TraceDir = "/sys/kernel/tracing"
	// ModulesFile lists L1's loaded modules.
	ModulesFile = "/proc/modules"
)

// CR3Event names the probe event that records, at each SHUTDOWN exit, the
// vCPU's CR3 (KVM copies the VMCB's CR3 to vcpu->arch.cr3 on every exit
// under nested paging, before the exit handler runs: svm_handle_exit in
// arch/x86/kvm/svm/svm.c) and the VM's RAM in pages (kvm->nr_memslot_pages).
// tracefs prints it as "... shutdown_cr3: (shutdown_interception+0x4/0x50
// [kvm_amd]) cr3=0x4a4000 pages=32768 id=0 cr2=0x0", right after the SHUTDOWN
// exit's kvm_exit line of the same vCPU thread.
const CR3Event = "shutdown_cr3"

// cr3Probe defines CR3Event: an fprobe on kvm-amd's SHUTDOWN handler whose
// fields are read through the kernel's BTF (CONFIG_PROBE_EVENTS_BTF_ARGS).
// cr2 is the guest's CR2, which KVM also copies from the VMCB on every
// exit (svm_vcpu_run): the address of the guest's last page fault.
const cr3Probe = "f:nitrovm/" + CR3Event + " shutdown_interception cr3=vcpu->arch.cr3:x64 pages=vcpu->kvm->nr_memslot_pages:u64 id=vcpu->vcpu_id:s32 cr2=vcpu->arch.cr2:x64"

// svmExitShutdown is SVM_EXIT_SHUTDOWN, the kvm_exit tracepoint's
// exit_reason for a triple fault under kvm-amd
// (arch/x86/include/uapi/asm/svm.h).
const svmExitShutdown = 0x7f

// traceBufferKiB is the trace buffer per CPU. A recorded exit takes about
// 70 bytes; only SHUTDOWN exits are recorded.
const traceBufferKiB = 64

// traceShutdowns mounts tracefs on dir (unless mounted) and enables the
// kvm:kvm_exit tracepoint for SHUTDOWN exits only. kvm.ko must be loaded.
func traceShutdowns(dir string) error {
	if err := unix.Mount("tracefs", dir, "tracefs", 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("shutdown trace: mount tracefs on %s: %w", dir, err)
	}
	event := filepath.Join(dir, "events", "kvm", "kvm_exit")
	for _, w := range []struct{ file, value string }{
		{filepath.Join(dir, "buffer_size_kb"), strconv.Itoa(traceBufferKiB)},
		{filepath.Join(event, "filter"), fmt.Sprintf("exit_reason == %#x", svmExitShutdown)},
		{filepath.Join(event, "enable"), "1"},
	} {
		if err := os.WriteFile(w.file, []byte(w.value+"\n"), 0); err != nil {
			return fmt.Errorf("shutdown trace: %w", err)
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, "dynamic_events"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("shutdown trace: CR3 probe: %w", err)
	}
	_, err = f.WriteString(cr3Probe + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("shutdown trace: CR3 probe %q: %w", cr3Probe, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "events", "nitrovm", CR3Event, "enable"), []byte("1\n"), 0); err != nil {
		return fmt.Errorf("shutdown trace: CR3 probe: %w", err)
	}
	return nil
}

// writeEvidence writes, when failed, a ShutdownMarker line for each
// kvm_exit event in dir's trace buffer and a ModuleMarker line for each
// line of modules; then, failed or not, it clears the trace buffer. It
// does nothing when dir holds no trace buffer (tracing was not set up).
func writeEvidence(w io.Writer, dir, modules string, failed bool) {
	trace := filepath.Join(dir, "trace")
	b, err := os.ReadFile(trace)
	if err != nil {
		return
	}
	if failed {
		var out bytes.Buffer
		s := bufio.NewScanner(bytes.NewReader(b))
		for s.Scan() {
			if strings.Contains(s.Text(), " kvm_exit: ") || strings.Contains(s.Text(), " "+CR3Event+": ") {
				fmt.Fprintf(&out, "%s %s\n", ShutdownMarker, strings.TrimSpace(s.Text()))
			}
		}
		if m, err := os.ReadFile(modules); err == nil {
			for _, line := range strings.Split(strings.TrimSpace(string(m)), "\n") {
				fmt.Fprintf(&out, "%s %s\n", ModuleMarker, line)
			}
		}
		_, _ = w.Write(out.Bytes())
	}
	// Opening the buffer with O_TRUNC clears it.
	if f, err := os.OpenFile(trace, os.O_WRONLY|os.O_TRUNC, 0); err == nil {
		f.Close()
	}
}
