package vmm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/nitrovm/nitrovm/internal/kvm"
)

// pvmModulePath exists when /dev/kvm is provided by PVM (kvm_pvm), a
// shadow-paging hypervisor that runs only PVM-enlightened guest kernels.
const pvmModulePath = "/sys/module/kvm_pvm"

// ErrHostUnsupported is returned by CheckHost when /dev/kvm cannot boot an
// unmodified Linux guest.
var ErrHostUnsupported = errors.New("vmm: this host's KVM cannot boot an unmodified Linux guest")

// CheckHost returns nil if /dev/kvm can boot an unmodified guest; otherwise
// an error naming the problem. A PVM-backed /dev/kvm (this workplace's
// machines) yields ErrHostUnsupported pointing to the nested mode.
func CheckHost() error {
	return checkHost(kvm.DevicePath, pvmModulePath)
}

func checkHost(dev, pvm string) error {
	if _, err := os.Stat(pvm); err == nil {
		return fmt.Errorf("%w: %s is provided by kvm_pvm (%s loaded), which runs only PVM-enlightened kernels; "+
			"run it nested instead (nitrovm nested -- nitrovm ARGS...: a QEMU TCG L1 with kvm-amd) or on a host with kvm_intel/kvm_amd",
			ErrHostUnsupported, dev, pvm)
	}
	sys, err := kvm.OpenPath(dev)
	if err != nil {
		return fmt.Errorf("vmm: KVM unavailable (is virtualization enabled and %s accessible?): %w", dev, err)
	}
	defer sys.Close()
	return checkCaps(sys, dev)
}

// checkCaps checks that sys has the KVM capabilities Build relies on.
func checkCaps(sys interface{ CheckExtension(int) (int, error) }, dev string) error {
	for _, c := range []struct {
		cap  int
		name string
	}{
		{kvm.CapUserMemory, "KVM_CAP_USER_MEMORY"},
		{kvm.CapIRQChip, "KVM_CAP_IRQCHIP"},
		{kvm.CapPIT2, "KVM_CAP_PIT2"},
		{kvm.CapIRQFD, "KVM_CAP_IRQFD"},
		{kvm.CapExtCPUID, "KVM_CAP_EXT_CPUID"},
		{kvm.CapImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"},
	} {
		v, err := sys.CheckExtension(c.cap)
		if err != nil {
			return err
		}
		if v == 0 {
			return fmt.Errorf("%w: %s lacks %s", ErrHostUnsupported, dev, c.name)
		}
	}
	return nil
}

// cpuinfoPath is where hostCPUBrand reads the host's processor name.
const cpuinfoPath = "/proc/cpuinfo"

// readHostCPUBrand returns hostCPUBrand of cpuinfoPath.
func readHostCPUBrand() (string, error) {
	f, err := os.Open(cpuinfoPath)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return hostCPUBrand(f), nil
}

// hostCPUBrand returns the first "model name" of r, a /proc/cpuinfo: the
// host processor's brand string, which the guest is shown as its own, as a
// Nitro Enclave's is. "" if there is none (an arm64 host, say).
func hostCPUBrand(r io.Reader) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
