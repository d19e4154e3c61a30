// Package kvm is a thin layer over the Linux KVM ioctl API
// (Documentation/virt/kvm/api.rst) built on golang.org/x/sys/unix, without
// cgo. It holds no policy: the VMM decides what to create and how to set it up.
package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// DevicePath is the KVM device node.
const DevicePath = "/dev/kvm"

// System is an open /dev/kvm.
type System struct {
	fd int
}

// Open opens /dev/kvm and checks the API version.
func Open() (*System, error) { return OpenPath(DevicePath) }

// OpenPath opens the KVM device at path and checks the API version.
func OpenPath(path string) (*System, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	s := &System{fd: fd}
	v, err := ioctlVal(fd, _KVM_GET_API_VERSION, 0)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("kvm: KVM_GET_API_VERSION: %w", err)
	}
	if v != _KVM_API_VERSION {
		s.Close()
		return nil, fmt.Errorf("kvm: API version %d, want %d", v, _KVM_API_VERSION)
	}
	return s, nil
}

// Close closes /dev/kvm.
func (s *System) Close() error { return unix.Close(s.fd) }

// CheckExtension returns KVM_CHECK_EXTENSION's answer for capability c:
// 0 if unsupported, otherwise a positive, capability-specific value.
func (s *System) CheckExtension(c int) (int, error) {
	v, err := ioctlVal(s.fd, _KVM_CHECK_EXTENSION, uintptr(c))
	if err != nil {
		return 0, fmt.Errorf("kvm: KVM_CHECK_EXTENSION %d: %w", c, err)
	}
	return int(v), nil
}

// SupportedCPUID returns the CPUID entries KVM can present to a guest
// (KVM_GET_SUPPORTED_CPUID).
func (s *System) SupportedCPUID() ([]CPUIDEntry, error) {
	c := new(cpuid2)
	c.nent = maxCPUIDEntries
	if _, e := ioctlPtr(s.fd, _KVM_GET_SUPPORTED_CPUID, c); e != 0 {
		return nil, fmt.Errorf("kvm: KVM_GET_SUPPORTED_CPUID: %w", e)
	}
	n := min(int(c.nent), maxCPUIDEntries)
	return append([]CPUIDEntry(nil), c.entries[:n]...), nil
}

// CreateVM creates a virtual machine.
func (s *System) CreateVM() (*VM, error) {
	size, err := ioctlVal(s.fd, _KVM_GET_VCPU_MMAP_SIZE, 0)
	if err != nil {
		return nil, fmt.Errorf("kvm: KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	// KVM_CREATE_VM fails with EINTR when a signal is pending while it
	// sets up the VM (kvm_create_vm in virt/kvm/kvm_main.c), and the Go
	// runtime signals its threads to preempt goroutines: start it again,
	// as for any interrupted system call.
	fd, err := retryEINTR(func() (uintptr, error) { return ioctlVal(s.fd, _KVM_CREATE_VM, 0) })
	if err != nil {
		return nil, fmt.Errorf("kvm: KVM_CREATE_VM: %w", err)
	}
	return &VM{fd: int(fd), runSize: int(size)}, nil
}

// VM is a KVM virtual machine.
type VM struct {
	fd      int
	runSize int // size of each vCPU's kvm_run mapping.
}

// Close destroys the VM (once its vCPUs are closed too).
func (vm *VM) Close() error { return unix.Close(vm.fd) }

// CheckExtension is System.CheckExtension asked of this VM.
func (vm *VM) CheckExtension(c int) (int, error) {
	v, err := ioctlVal(vm.fd, _KVM_CHECK_EXTENSION, uintptr(c))
	if err != nil {
		return 0, fmt.Errorf("kvm: KVM_CHECK_EXTENSION %d: %w", c, err)
	}
	return int(v), nil
}

// SetUserMemoryRegion maps host memory mem as guest-physical memory at gpa
// in slot. mem must stay mapped while the VM exists.
func (vm *VM) SetUserMemoryRegion(slot uint32, gpa uint64, mem []byte) error {
	if len(mem) == 0 || len(mem)%os.Getpagesize() != 0 {
		return fmt.Errorf("kvm: memory region at %#x: size %#x is not a positive multiple of the page size", gpa, len(mem))
	}
	if e := setUserMemoryRegion(vm.fd, slot, gpa, mem); e != 0 {
		return fmt.Errorf("kvm: KVM_SET_USER_MEMORY_REGION slot %d at %#x size %#x: %w", slot, gpa, len(mem), e)
	}
	return nil
}

// SetTSSAddr places the three-page TSS region Intel VMX needs (KVM_SET_TSS_ADDR).
func (vm *VM) SetTSSAddr(addr uint64) error {
	if _, err := ioctlVal(vm.fd, _KVM_SET_TSS_ADDR, uintptr(addr)); err != nil {
		return fmt.Errorf("kvm: KVM_SET_TSS_ADDR %#x: %w", addr, err)
	}
	return nil
}

// SetIdentityMapAddr places the one-page EPT identity map Intel VMX needs
// (KVM_SET_IDENTITY_MAP_ADDR).
func (vm *VM) SetIdentityMapAddr(addr uint64) error {
	a := addr
	if _, e := ioctlPtr(vm.fd, _KVM_SET_IDENTITY_MAP_ADDR, &a); e != 0 {
		return fmt.Errorf("kvm: KVM_SET_IDENTITY_MAP_ADDR %#x: %w", addr, e)
	}
	return nil
}

// CreateIRQChip creates the in-kernel PIC pair, IOAPIC and local APICs
// with the default GSI routing (KVM_CREATE_IRQCHIP).
func (vm *VM) CreateIRQChip() error {
	if _, err := ioctlVal(vm.fd, _KVM_CREATE_IRQCHIP, 0); err != nil {
		return fmt.Errorf("kvm: KVM_CREATE_IRQCHIP: %w", err)
	}
	return nil
}

// CreatePIT2 creates the in-kernel i8254 PIT, with port 0x61 handled in
// the kernel too (KVM_PIT_SPEAKER_DUMMY).
func (vm *VM) CreatePIT2() error {
	c := pitConfig{flags: _KVM_PIT_SPEAKER_DUMMY}
	if _, e := ioctlPtr(vm.fd, _KVM_CREATE_PIT2, &c); e != 0 {
		return fmt.Errorf("kvm: KVM_CREATE_PIT2: %w", e)
	}
	return nil
}

// IRQLine sets the level of interrupt line irq (KVM_IRQ_LINE).
func (vm *VM) IRQLine(irq uint32, high bool) error {
	l := irqLevel{irq: irq}
	if high {
		l.level = 1
	}
	if _, e := ioctlPtr(vm.fd, _KVM_IRQ_LINE, &l); e != 0 {
		return fmt.Errorf("kvm: KVM_IRQ_LINE %d: %w", irq, e)
	}
	return nil
}

// IRQFD makes a write to eventfd efd inject an edge on gsi (KVM_IRQFD).
func (vm *VM) IRQFD(efd int, gsi uint32) error {
	r := irqfd{fd: uint32(efd), gsi: gsi}
	if _, e := ioctlPtr(vm.fd, _KVM_IRQFD, &r); e != 0 {
		return fmt.Errorf("kvm: KVM_IRQFD gsi %d: %w", gsi, e)
	}
	return nil
}

// IOEventFD makes a guest write of length bytes to addr (a port if pio,
// else MMIO) signal eventfd efd instead of exiting (KVM_IOEVENTFD).
func (vm *VM) IOEventFD(efd int, addr uint64, length uint32, pio bool) error {
	return vm.ioEventFD(ioeventfd{addr: addr, len: length, fd: int32(efd)}, pio)
}

// IOEventFDMatch is IOEventFD for writes of the value data only
// (KVM_IOEVENTFD_FLAG_DATAMATCH); other writes still exit.
func (vm *VM) IOEventFDMatch(efd int, addr uint64, length uint32, pio bool, data uint64) error {
	return vm.ioEventFD(ioeventfd{datamatch: data, addr: addr, len: length, fd: int32(efd), flags: _KVM_IOEVENTFD_FLAG_DATAMATCH}, pio)
}

func (vm *VM) ioEventFD(r ioeventfd, pio bool) error {
	if pio {
		r.flags |= _KVM_IOEVENTFD_FLAG_PIO
	}
	if _, e := ioctlPtr(vm.fd, _KVM_IOEVENTFD, &r); e != 0 {
		return fmt.Errorf("kvm: KVM_IOEVENTFD %#x: %w", r.addr, e)
	}
	return nil
}

// CreateVCPU creates vCPU id (also its initial APIC ID) and maps its
// kvm_run page.
func (vm *VM) CreateVCPU(id int) (*VCPU, error) {
	fd, err := ioctlVal(vm.fd, _KVM_CREATE_VCPU, uintptr(id))
	if err != nil {
		return nil, fmt.Errorf("kvm: KVM_CREATE_VCPU %d: %w", id, err)
	}
	run, err := unix.Mmap(int(fd), 0, vm.runSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(int(fd))
		return nil, fmt.Errorf("kvm: mmap kvm_run of vCPU %d: %w", id, err)
	}
	if len(run) < runUnion+0x100 {
		unix.Munmap(run)
		unix.Close(int(fd))
		return nil, fmt.Errorf("kvm: kvm_run of %d bytes is too small", len(run))
	}
	return &VCPU{ID: id, fd: int(fd), run: run}, nil
}

// VCPU is a virtual CPU. Run and the exit accessors must be called from one
// goroutine at a time; SetImmediateExit may be called from any.
type VCPU struct {
	ID  int    // vCPU index, also its APIC ID.
	fd  int    // vCPU file descriptor.
	run []byte // the shared kvm_run page(s).
}

// Close unmaps kvm_run and closes the vCPU.
func (c *VCPU) Close() error {
	err := unix.Munmap(c.run)
	return errors.Join(err, unix.Close(c.fd))
}

// Run enters the guest until the next exit (KVM_RUN). It returns a
// unix.Errno on failure; unix.EINTR means a signal or immediate_exit
// interrupted it.
func (c *VCPU) Run() error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(c.fd), _KVM_RUN, 0)
	if e != 0 {
		return e
	}
	return nil
}

// SetImmediateExit sets kvm_run.immediate_exit: while set, Run returns
// EINTR at once instead of entering the guest.
func (c *VCPU) SetImmediateExit(on bool) {
	var v byte
	if on {
		v = 1
	}
	c.run[runImmediateExit] = v
}

// ExitReason returns kvm_run.exit_reason of the last exit.
func (c *VCPU) ExitReason() uint32 { return binary.LittleEndian.Uint32(c.run[runExitReason:]) }

// IO describes a KVM_EXIT_IO: out is true for a guest OUT; data aliases
// kvm_run and holds size*count bytes (to read for OUT, to fill for IN).
func (c *VCPU) IO() (port uint16, size int, out bool, data []byte, err error) {
	u := c.run[runUnion:]
	out = u[0] == 1
	size = int(u[1])
	port = binary.LittleEndian.Uint16(u[2:])
	count := uint64(binary.LittleEndian.Uint32(u[4:]))
	off := binary.LittleEndian.Uint64(u[8:])
	n := uint64(size) * count
	if off > uint64(len(c.run)) || n > uint64(len(c.run))-off {
		return 0, 0, false, nil, fmt.Errorf("kvm: io exit data [%#x+%#x] outside kvm_run", off, n)
	}
	return port, size, out, c.run[off : off+n], nil
}

// MMIO describes a KVM_EXIT_MMIO: data aliases kvm_run (to read for a
// write, to fill for a read).
func (c *VCPU) MMIO() (addr uint64, data []byte, write bool) {
	u := c.run[runUnion:]
	addr = binary.LittleEndian.Uint64(u[0:])
	n := min(binary.LittleEndian.Uint32(u[16:]), 8)
	return addr, u[8 : 8+n], u[20] != 0
}

// SystemEvent describes a KVM_EXIT_SYSTEM_EVENT: its type (SystemEvent*)
// and flags.
func (c *VCPU) SystemEvent() (typ uint32, flags uint64) {
	u := c.run[runUnion:]
	return binary.LittleEndian.Uint32(u[0:]), binary.LittleEndian.Uint64(u[8:])
}

// InternalError describes a KVM_EXIT_INTERNAL_ERROR: suberror (1 is
// KVM_INTERNAL_ERROR_EMULATION) and up to 16 data words.
func (c *VCPU) InternalError() (suberror uint32, data []uint64) {
	u := c.run[runUnion:]
	suberror = binary.LittleEndian.Uint32(u[0:])
	n := min(binary.LittleEndian.Uint32(u[4:]), 16)
	for i := range n {
		data = append(data, binary.LittleEndian.Uint64(u[8+8*i:]))
	}
	return suberror, data
}

// FailEntry returns hardware_entry_failure_reason of a KVM_EXIT_FAIL_ENTRY.
func (c *VCPU) FailEntry() uint64 { return binary.LittleEndian.Uint64(c.run[runUnion:]) }

// Regs returns the general-purpose registers (KVM_GET_REGS).
func (c *VCPU) Regs() (Regs, error) {
	var r Regs
	if _, e := ioctlPtr(c.fd, _KVM_GET_REGS, &r); e != 0 {
		return r, fmt.Errorf("kvm: KVM_GET_REGS: %w", e)
	}
	return r, nil
}

// SetRegs sets the general-purpose registers (KVM_SET_REGS).
func (c *VCPU) SetRegs(r Regs) error {
	if _, e := ioctlPtr(c.fd, _KVM_SET_REGS, &r); e != 0 {
		return fmt.Errorf("kvm: KVM_SET_REGS: %w", e)
	}
	return nil
}

// Sregs returns the special registers (KVM_GET_SREGS).
func (c *VCPU) Sregs() (Sregs, error) {
	var s Sregs
	if _, e := ioctlPtr(c.fd, _KVM_GET_SREGS, &s); e != 0 {
		return s, fmt.Errorf("kvm: KVM_GET_SREGS: %w", e)
	}
	return s, nil
}

// SetSregs sets the special registers (KVM_SET_SREGS).
func (c *VCPU) SetSregs(s Sregs) error {
	if _, e := ioctlPtr(c.fd, _KVM_SET_SREGS, &s); e != 0 {
		return fmt.Errorf("kvm: KVM_SET_SREGS: %w", e)
	}
	return nil
}

// SetFPU sets the x87/SSE state (KVM_SET_FPU).
func (c *VCPU) SetFPU(f FPU) error {
	if _, e := ioctlPtr(c.fd, _KVM_SET_FPU, &f); e != 0 {
		return fmt.Errorf("kvm: KVM_SET_FPU: %w", e)
	}
	return nil
}

// SetCPUID sets what CPUID reports to the guest (KVM_SET_CPUID2).
func (c *VCPU) SetCPUID(entries []CPUIDEntry) error {
	if len(entries) > maxCPUIDEntries {
		return fmt.Errorf("kvm: %d CPUID entries, at most %d", len(entries), maxCPUIDEntries)
	}
	b := new(cpuid2)
	b.nent = uint32(copy(b.entries[:], entries))
	if _, e := ioctlPtr(c.fd, _KVM_SET_CPUID2, b); e != 0 {
		return fmt.Errorf("kvm: KVM_SET_CPUID2: %w", e)
	}
	return nil
}

// SetMSRs writes model-specific registers (KVM_SET_MSRS).
func (c *VCPU) SetMSRs(entries []MSR) error {
	if len(entries) > maxMSREntries {
		return fmt.Errorf("kvm: %d MSRs, at most %d", len(entries), maxMSREntries)
	}
	var b msrs
	b.nmsrs = uint32(copy(b.entries[:], entries))
	n, e := ioctlPtr(c.fd, _KVM_SET_MSRS, &b)
	if e != 0 {
		return fmt.Errorf("kvm: KVM_SET_MSRS: %w", e)
	}
	if int(n) != len(entries) {
		return fmt.Errorf("kvm: KVM_SET_MSRS set %d of %d MSRs (first refused: %#x)", n, len(entries), entries[n].Index)
	}
	return nil
}

// SetXCR0 sets extended control register XCR0, the state components
// XSAVE manages (KVM_SET_XCRS). KVM checks xcr0 against the vCPU's CPUID
// leaf 0xD, so SetCPUID must come first.
func (c *VCPU) SetXCR0(xcr0 uint64) error {
	var x xcrs
	x.nrXCRs = 1
	x.xcrs[0].value = xcr0 // xcr 0 is XCR0 (XCR_XFEATURE_ENABLED_MASK).
	if _, e := ioctlPtr(c.fd, _KVM_SET_XCRS, &x); e != 0 {
		return fmt.Errorf("kvm: KVM_SET_XCRS XCR0=%#x: %w", xcr0, e)
	}
	return nil
}

// LAPIC returns the local APIC registers (KVM_GET_LAPIC).
func (c *VCPU) LAPIC() (LAPICState, error) {
	var l LAPICState
	if _, e := ioctlPtr(c.fd, _KVM_GET_LAPIC, &l); e != 0 {
		return l, fmt.Errorf("kvm: KVM_GET_LAPIC: %w", e)
	}
	return l, nil
}

// SetLAPIC sets the local APIC registers (KVM_SET_LAPIC).
func (c *VCPU) SetLAPIC(l LAPICState) error {
	if _, e := ioctlPtr(c.fd, _KVM_SET_LAPIC, &l); e != 0 {
		return fmt.Errorf("kvm: KVM_SET_LAPIC: %w", e)
	}
	return nil
}

// XCR0 returns extended control register XCR0 (KVM_GET_XCRS).
func (c *VCPU) XCR0() (uint64, error) {
	var x xcrs
	if _, e := ioctlPtr(c.fd, _KVM_GET_XCRS, &x); e != 0 {
		return 0, fmt.Errorf("kvm: KVM_GET_XCRS: %w", e)
	}
	for i := range min(int(x.nrXCRs), maxXCRs) {
		if x.xcrs[i].xcr == 0 {
			return x.xcrs[i].value, nil
		}
	}
	return 0, errors.New("kvm: KVM_GET_XCRS: no XCR0")
}

// VCPUEvents returns the pending and injected exception, interrupt, NMI and
// SMI state (KVM_GET_VCPU_EVENTS).
func (c *VCPU) VCPUEvents() (VCPUEvents, error) {
	var e VCPUEvents
	if _, err := ioctlPtr(c.fd, _KVM_GET_VCPU_EVENTS, &e); err != 0 {
		return e, fmt.Errorf("kvm: KVM_GET_VCPU_EVENTS: %w", err)
	}
	return e, nil
}

// MPState returns the vCPU's multiprocessing state, one of MPState*
// (KVM_GET_MP_STATE).
func (c *VCPU) MPState() (uint32, error) {
	var m mpState
	if _, e := ioctlPtr(c.fd, _KVM_GET_MP_STATE, &m); e != 0 {
		return 0, fmt.Errorf("kvm: KVM_GET_MP_STATE: %w", e)
	}
	return m.state, nil
}

// retryEINTR calls f until it fails with something other than EINTR or
// succeeds. Only for calls that have no effect when interrupted.
func retryEINTR(f func() (uintptr, error)) (uintptr, error) {
	for {
		r, err := f()
		if !errors.Is(err, unix.EINTR) {
			return r, err
		}
	}
}

// ioctlVal issues an ioctl whose argument is a plain value.
func ioctlVal(fd int, req, arg uintptr) (uintptr, error) {
	r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if e != 0 {
		return 0, e
	}
	return r, nil
}
