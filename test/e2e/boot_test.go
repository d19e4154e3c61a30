//go:build e2e

package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nitrovm/nitrovm/internal/nested"
	"github.com/nitrovm/nitrovm/internal/vmm"
)

// Kernel image mapping of x86-64 Linux, where a guest kernel's own code
// runs: __START_KERNEL_map up to its largest KERNEL_IMAGE_SIZE, 1 GiB
// (arch/x86/include/asm/page_64_types.h); L1's modules lie above it.
const (
	kernelMapStart = 0xffffffff80000000
	kernelMapEnd   = kernelMapStart + 1<<30
)

// TestBoot boots the enclave kernel with testinit under nitrovm in one L1
// session: CPU and memory sizes, reboot -> exit 0, panic -> exit 3 (also
// behind a long unfinished tty line), a
// deliberate triple fault -> exit 3 and not an L1 fault, direct kernel
// boot, and Debian's stock cloud kernel; the guests run their APICs in
// x2APIC mode and see no hardware virtualization, and the enclave kernel
// has what applications use of AWS's.
func TestBoot(t *testing.T) {
	e := setup(t)
	s := e.newSession(t)
	sysinfo := s.file(e.testEIF(t, e.guestKernel, "sysinfo"))
	panicEIF := s.file(e.testEIF(t, e.guestKernel, "sysinfo,panic"))
	noisyEIF := s.file(e.testEIF(t, e.guestKernel, "sysinfo,panic-noisy"))
	stock := s.file(e.testEIF(t, e.stockKernel, "sysinfo"))
	kernel, initrd := s.file(e.guestKernel), s.file(e.ramdisk(t))

	boot := func(args ...string) []string {
		return append([]string{"nitrovm", "boot", "--console", "stdout"}, args...)
	}
	sizes := []struct {
		name      string
		cpus, mib int
		run       *bootRun
	}{
		{name: "cpus2-mem256", cpus: 2, mib: 256},
		{name: "cpus4-mem512", cpus: 4, mib: 512},
	}
	for i := range sizes {
		sz := &sizes[i]
		sz.run = s.boot(sz.name, 120*time.Second, boot("--eif-path", sysinfo,
			"--cpu-count", strconv.Itoa(sz.cpus), "--memory", strconv.Itoa(sz.mib))...)
	}
	// Guests that must not fail have 2 vCPUs, as real enclaves do: a
	// triple fault of the nested emulator in a 1-vCPU guest cannot be
	// proven (nitrovm's state dump needs another vCPU with the same CR3
	// for its kernel map; docs/nested.md).
	direct := s.boot("kernel-initrd", 120*time.Second, boot("--kernel", kernel, "--initrd", initrd,
		"--cmdline", awsCmdline+" nitrovm.test=sysinfo", "--cpu-count", "2", "--memory", "128")...)
	panicked := s.boot("panic", 120*time.Second, boot("--eif-path", panicEIF, "--cpu-count", "2", "--memory", "256")...)
	noisy := s.boot("panic-noisy", 120*time.Second, boot("--eif-path", noisyEIF, "--cpu-count", "2", "--memory", "256")...)
	// reboot=t (appended to the EIF's reboot=k) makes the guest kernel
	// reboot by a triple fault (arch/x86/kernel/reboot.c, BOOT_TRIPLE).
	triple := s.boot("triple-fault", 120*time.Second, boot("--eif-path", sysinfo, "--cmdline", "reboot=t", "--cpu-count", "1", "--memory", "128")...)
	debian := s.boot("stock-kernel", 120*time.Second, boot("--eif-path", stock, "--cpu-count", "2", "--memory", "512")...)
	s.run()

	for _, sz := range sizes {
		t.Run(sz.name, func(t *testing.T) {
			b := sz.run
			b.wantExit(t, 0)
			b.want(t, "cpus", strconv.Itoa(sz.cpus))
			kib, err := strconv.Atoi(b.report["mem_kib"])
			// MemTotal excludes the kernel image and reserved memory.
			if err != nil || kib > sz.mib*1024 || kib < sz.mib*1024*6/10 {
				t.Errorf("guest mem_kib: got %q, want about %d MiB", b.report["mem_kib"], sz.mib)
			}
			if b.checks["sysinfo"] != "ok" || b.failures != 0 {
				t.Errorf("testinit: checks %v, failures %d; want sysinfo ok, 0", b.checks, b.failures)
			}
			wantX2APIC(t, b)
			// No VMX or SVM, as on Nitro, though L1's KVM offers SVM.
			b.want(t, "hwvirt", "")
			// Every system call, namespace, cgroup controller, file
			// system and network facility of AWS's kernel that testinit
			// probes (guest/testinit/features.go).
			b.want(t, "missing", "")
		})
	}
	t.Run("kernel-initrd", func(t *testing.T) {
		direct.wantExit(t, 0)
		direct.want(t, "cpus", "2")
		if !strings.Contains(direct.report["cmdline"], "nitrovm.test=sysinfo") {
			t.Errorf("guest cmdline: got %q, want it to contain nitrovm.test=sysinfo", direct.report["cmdline"])
		}
	})
	t.Run("panic", func(t *testing.T) {
		panicked.wantExit(t, 3)
		if panicked.report["panic"] != "now" {
			t.Errorf("testinit did not reach the panic check; report %v", panicked.report)
		}
		if !strings.Contains(strings.ToLower(panicked.output), "panic") {
			t.Errorf("no panic message in the output:\n%s", panicked.output)
		}
	})
	// The kernel's panic line comes after hundreds or thousands of bytes
	// of an unfinished tty line that another guest process keeps writing
	// (testinit's panicNoisy), and may have some of them in its middle;
	// the VMM's console scan must still report the panic at once rather
	// than as a reboot after panic=30.
	t.Run("panic-noisy", func(t *testing.T) {
		noisy.wantExit(t, 3)
		if noisy.report["panic"] != "noisy" {
			t.Errorf("testinit did not reach the panic-noisy check; report %v", noisy.report)
		}
		const want = "nitrovm: guest panic: Kernel panic - not syncing: Attempted to kill init!"
		if !strings.Contains(noisy.output, want) {
			t.Errorf("no %q in the output:\n%s", want, noisy.output)
		}
		whole := strings.Count(noisy.output, "] Kernel panic - not syncing: Attempted to kill init!")
		t.Logf("console: about %d bytes of the tty's line, the kernel's panic line whole on it %d times (0: interleaved)",
			strings.Count(noisy.output, "z"), whole)
	})
	t.Run("triple-fault", func(t *testing.T) {
		triple.wantExit(t, 3)
		if !strings.Contains(triple.output, vmm.TripleFaultMarker) {
			t.Errorf("no %q in the output:\n%s", vmm.TripleFaultMarker, triple.output)
		}
		// L1 recorded the SHUTDOWN exit at the guest kernel's rip, outside
		// L1's modules, so the failure is the guest's, not L1's.
		ev := nested.ParseL1Evidence(triple.output)
		t.Logf("recorded SHUTDOWN exits %+v, %d L1 modules, malformed %q", ev.Exits, len(ev.Modules), ev.Malformed)
		if len(ev.Exits) != 1 || len(ev.Malformed) != 0 {
			t.Fatalf("L1's record: got exits %+v, malformed %q; want one exit", ev.Exits, ev.Malformed)
		}
		if rip := ev.Exits[0].RIP; rip < kernelMapStart || rip >= kernelMapEnd {
			t.Errorf("recorded rip %#x: want it in the guest kernel's image mapping [%#x, %#x)", rip, uint64(kernelMapStart), uint64(kernelMapEnd))
		}
		kvmAMD := false
		for _, m := range ev.Modules {
			kvmAMD = kvmAMD || m.Name == "kvm_amd"
		}
		if !kvmAMD {
			t.Errorf("L1's modules: got %+v, want kvm_amd among them", ev.Modules)
		}
		// The CR3 probe recorded the guest's own page tables, inside its
		// 128 MiB (32768 pages).
		if x := ev.Exits[0]; !x.HasCR3 || x.RAMPages != 32768 || x.CR3&^0xfff >= 128<<20 || x.CR3 == 0 {
			t.Errorf("L1's CR3 record: got %+v, want a CR3 inside the guest's 32768 pages", x)
		}
		if f := nested.CommandFault(triple.output, triple.exit); f != nil {
			t.Errorf("classified as an L1 fault: %v; want the guest's own failure", f)
		}
	})
	t.Run("stock-kernel", func(t *testing.T) {
		debian.wantExit(t, 0)
		debian.want(t, "cpus", "2")
		if !strings.Contains(debian.report["kernel"], "cloud-amd64") {
			t.Errorf("guest kernel: got %q, want Debian's cloud kernel", debian.report["kernel"])
		}
		wantX2APIC(t, debian)
		debian.want(t, "hwvirt", "")
		t.Logf("Debian's kernel without its modules lacks %q", debian.report["missing"])
	})
}

// wantX2APIC checks that b's guest kernel drives its local APICs in x2APIC
// mode, as AWS's enclave kernel does on Nitro (CONFIG_X86_X2APIC; KVM's
// local APIC offers it and the guest finds it in CPUID leaf 1).
func wantX2APIC(t *testing.T, b *bootRun) {
	t.Helper()
	if !strings.Contains(b.report["apic"], "x2apic") {
		t.Errorf("guest APIC driver %q, want an x2apic one", b.report["apic"])
	}
}
