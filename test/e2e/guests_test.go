//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nitrovm/nitrovm/internal/nested"
)

// stockModules are the modules Debian's cloud kernel needs for an enclave
// (its config has CONFIG_VIRTIO_MMIO=m and CONFIG_VIRTIO_VSOCKETS=m),
// dependencies first, as its modules.dep orders them.
var stockModules = []string{
	"kernel/drivers/virtio/virtio_mmio.ko.xz",
	"kernel/net/vmw_vsock/vsock.ko.xz",
	"kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko.xz",
	"kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko.xz",
}

// TestVMMGuests checks how guests find nitrovm's virtio devices, in one
// L1 session, each enclave started with run-enclave --attach-console and
// doing the Nitro heartbeat over vsock (run-enclave returns only after it):
//
//   - stock-acpi: Debian's cloud kernel (also the L1 kernel), which has no
//     CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES, so it can only find the devices
//     through the ACPI DSDT (LNRO0005); its virtio-mmio and vsock modules
//     are loaded by testinit from the ramdisk;
//   - guest-acpi-off: the enclave kernel with acpi=off, which finds them
//     on the command line (virtio_mmio.device=);
//   - vmm-kvm-tests: internal/vmm's kvm-tagged Linux-guest tests
//     (TestGuestVirtio: two inert devices with ACPI and with acpi=off;
//     TestGuestVsockHeartbeat), which need a KVM that runs Linux. They
//     used to run from the nested-tagged TestNestedBoot, outside make
//     test; its other boots (CPU and memory sizes, reboot and panic exit
//     status) are TestBoot's.
func TestVMMGuests(t *testing.T) {
	e := setup(t)
	out, err := exec.Command("bash", filepath.Join(e.root, "scripts/kernel/l1-kernel.sh")).Output()
	if err != nil {
		t.Fatalf("scripts/kernel/l1-kernel.sh: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 {
		t.Fatalf("scripts/kernel/l1-kernel.sh printed %q, want the vmlinuz and module directory", out)
	}
	config := filepath.Join(filepath.Dir(lines[0]), "config-"+strings.TrimPrefix(filepath.Base(lines[0]), "vmlinuz-"))
	if b, err := os.ReadFile(config); err != nil {
		t.Errorf("stock kernel config: %v", err)
	} else if !strings.Contains(string(b), "# CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES is not set") {
		t.Errorf("%s: CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES is set; the stock-acpi boot no longer proves the ACPI path", config)
	}

	stockRD := e.stockRamdisk(t, lines[1])
	stockEIF := e.buildEIF(t, "stock-acpi", e.stockKernel, stockRD, awsCmdline+" nitrovm.test=sysinfo,heartbeat")
	acpiOffEIF := e.buildEIF(t, "guest-acpi-off", e.guestKernel, e.ramdisk(t), awsCmdline+" acpi=off nitrovm.test=sysinfo,heartbeat")
	vmmTest := filepath.Join(e.tmp, "vmm.test")
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "test", "-c", "-tags", "kvm", "-o", vmmTest, "./internal/vmm")
	cmd.Dir = e.root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go test -c -tags kvm ./internal/vmm: %v\n%s", err, b)
	}

	s := e.newSession(t)
	run := func(name, eif, mem string) *bootRun {
		return s.boot(name, 240*time.Second, "sh", "-c", fmt.Sprintf(
			`export NITROVM_STATE_DIR=/run/e2e-guests
timeout 220 nitrovm run-enclave --eif-path %[1]s --memory %[2]s --cpu-count 2 --attach-console --enclave-name %[3]s %[4]s >/tmp/%[3]s.con 2>&1
rc=$?; tr -d '\r' </tmp/%[3]s.con; exit $rc`,
			s.file(eif), mem, name, heartbeatFlag))
	}
	stock := run("stock-acpi", stockEIF, "512")
	acpiOff := run("guest-acpi-off", acpiOffEIF, "256")
	kvmTests := s.boot("vmm-kvm-tests", 300*time.Second, "sh", "-c", fmt.Sprintf(
		"NITROVM_TEST_KERNEL=%s NITROVM_TEST_INITRD=%s %s -test.run 'TestGuestVirtio|TestGuestVsockHeartbeat' -test.v -test.timeout 280s",
		s.file(e.guestKernel), s.file(e.ramdisk(t)), s.file(vmmTest)))
	s.run()

	for _, c := range []struct {
		b       *bootRun
		via     string // the parent every virtio device must have
		kernel  string // what the guest's kernel release must contain
		modules bool
	}{
		{stock, "LNRO0005:", "cloud-amd64", true},
		{acpiOff, "virtio-mmio.", "", false},
	} {
		t.Run(c.b.name, func(t *testing.T) {
			b := c.b
			b.wantExit(t, 0)
			if b.checks["sysinfo"] != "ok" || b.checks["heartbeat"] != "ok" || b.failures != 0 {
				t.Errorf("testinit: checks %v, failures %d; want sysinfo and heartbeat ok, 0\n%s", b.checks, b.failures, b.output)
			}
			if !strings.Contains(b.report["virtio"], ":19") {
				t.Errorf("guest virtio devices %q: no vsock (device ID 19)", b.report["virtio"])
			}
			via := strings.Split(b.report["virtio_via"], ",")
			for _, v := range via {
				if _, parent, _ := strings.Cut(v, ":"); !strings.HasPrefix(parent, c.via) {
					t.Errorf("guest virtio_via %q: %q not found through %s*", b.report["virtio_via"], v, c.via)
				}
			}
			if len(via) == 0 || via[0] == "" {
				t.Errorf("guest found no virtio devices")
			}
			if !strings.Contains(b.report["kernel"], c.kernel) {
				t.Errorf("guest kernel %q, want %q", b.report["kernel"], c.kernel)
			}
			if c.modules && b.report["modules"] == "" {
				t.Errorf("testinit loaded no modules")
			}
			t.Logf("%s: kernel %s, virtio %s via %s, heartbeat %s, modules %s, run-enclave %.1fs (L1 time)",
				b.name, b.report["kernel"], b.report["virtio"], b.report["virtio_via"], b.report["heartbeat"], b.report["modules"], b.seconds)
		})
	}
	t.Run("vmm-kvm-tests", func(t *testing.T) {
		kvmTests.wantExit(t, 0)
		for _, want := range []string{"--- PASS: TestGuestVirtio/cmdline ", "--- PASS: TestGuestVirtio/cmdline_acpi=off ", "--- PASS: TestGuestVsockHeartbeat "} {
			if !strings.Contains(kvmTests.output, want) {
				t.Errorf("vmm.test output lacks %q", want)
			}
		}
	})
}

// stockRamdisk returns a cpio with testinit as /init, the modules of
// stockModules from modDir under /lib/modules, and /modules.list naming
// them in order.
func (e *testEnv) stockRamdisk(t *testing.T, modDir string) string {
	t.Helper()
	entries := []nested.Entry{
		{Name: "/init", HostPath: e.testinit, Mode: 0o755},
		{Name: "/dev", Dir: true}, {Name: "/proc", Dir: true}, {Name: "/sys", Dir: true}, {Name: "/tmp", Dir: true},
		{Name: "/lib", Dir: true}, {Name: "/lib/modules", Dir: true},
	}
	var list strings.Builder
	for _, m := range stockModules {
		p := filepath.Join(modDir, m)
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("stock kernel module: %v", err)
		}
		name := "/lib/modules/" + filepath.Base(m)
		entries = append(entries, nested.Entry{Name: name, HostPath: p, Mode: 0o644})
		list.WriteString(name + "\n")
	}
	lp := filepath.Join(e.tmp, "modules.list")
	if err := os.WriteFile(lp, []byte(list.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	entries = append(entries, nested.Entry{Name: "/modules.list", HostPath: lp, Mode: 0o644})
	var buf bytes.Buffer
	if err := nested.WriteCPIO(&buf, entries); err != nil {
		t.Fatalf("stock ramdisk: %v", err)
	}
	p := filepath.Join(e.tmp, "stock.cpio")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// buildEIF builds name.eif from kernel, ramdisk and cmdline with nitrovm
// build-eif.
func (e *testEnv) buildEIF(t *testing.T, name, kernel, ramdisk, cmdline string) string {
	t.Helper()
	out := filepath.Join(e.tmp, name+".eif")
	cmd := exec.Command(e.nitrovm, "build-eif", "--kernel", kernel, "--cmdline", cmdline, "--ramdisk", ramdisk, "--output", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nitrovm build-eif %s: %v\n%s", name, err, b)
	}
	return out
}
