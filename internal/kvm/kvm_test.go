//go:build kvm

package kvm

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestRealModeSnippet runs "mov al, 0x42; out 0x10, al; hlt" in real mode.
// It needs /dev/kvm (any flavour, PVM included): go test -tags kvm.
func TestRealModeSnippet(t *testing.T) {
	sys, err := Open()
	if err != nil {
		t.Skipf("no KVM: %v", err)
	}
	defer sys.Close()
	vm, err := sys.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	mem, err := unix.Mmap(-1, 0, 0x1000, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	copy(mem, []byte{0xb0, 0x42, 0xe6, 0x10, 0xf4})
	if err := vm.SetUserMemoryRegion(0, 0, mem); err != nil {
		t.Fatal(err)
	}
	c, err := vm.CreateVCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.Sregs()
	if err != nil {
		t.Fatal(err)
	}
	s.CS.Base, s.CS.Selector = 0, 0
	if err := c.SetSregs(s); err != nil {
		t.Fatal(err)
	}
	if err := c.SetRegs(Regs{RIP: 0, RFLAGS: 2}); err != nil {
		t.Fatal(err)
	}
	if err := c.Run(); err != nil {
		t.Fatalf("KVM_RUN: %v", err)
	}
	if got := c.ExitReason(); got != ExitIO {
		t.Fatalf("exit reason: got %d, want %d", got, ExitIO)
	}
	port, size, out, data, err := c.IO()
	if err != nil || port != 0x10 || size != 1 || !out || len(data) != 1 || data[0] != 0x42 {
		t.Fatalf("io exit: got port %#x size %d out %v data %x err %v, want 0x10 1 true 42", port, size, out, data, err)
	}
	if err := c.Run(); err != nil {
		t.Fatalf("KVM_RUN: %v", err)
	}
	if got := c.ExitReason(); got != ExitHLT {
		t.Fatalf("exit reason: got %d, want %d", got, ExitHLT)
	}
	// KVM counted the two exits (the binary stats interface, Linux 5.14+).
	if st, err := c.Stats(); err != nil {
		t.Logf("no vCPU stats: %v", err)
	} else {
		m, err := st.Read()
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
		// PVM's vendor module does not bump io_exits; the total and
		// halt_exits are generic.
		if _, ok := m["io_exits"]; !ok || m["halt_exits"] < 1 || m["exits"] < 2 {
			t.Errorf("got %v, want exits >= 2, halt_exits >= 1 and an io_exits counter", m)
		}
	}
	if st, err := vm.Stats(); err != nil {
		t.Logf("no VM stats: %v", err)
	} else {
		if _, err := st.Read(); err != nil {
			t.Error(err)
		}
		st.Close()
	}
	c.SetImmediateExit(true)
	if err := c.Run(); err != unix.EINTR {
		t.Fatalf("KVM_RUN with immediate_exit: got %v, want EINTR", err)
	}
	if _, err := sys.SupportedCPUID(); err != nil {
		t.Fatal(err)
	}
}
