// Package vmm builds and runs a nitrovm microVM on KVM: guest RAM, vCPUs
// (one OS thread each), the in-kernel interrupt controllers and PIT, a
// 8250 console, an i8042 for guest reboot and virtio-mmio slots for the
// enclave's devices, booting a Linux bzImage with the 64-bit boot protocol.
// It reports why the VM stopped: clean reboot, guest panic, stop request or
// VMM error.
package vmm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nitrovm/nitrovm/internal/arch/x86"
	"github.com/nitrovm/nitrovm/internal/devices/i8042"
	"github.com/nitrovm/nitrovm/internal/devices/serial"
	"github.com/nitrovm/nitrovm/internal/devices/virtio"
	"github.com/nitrovm/nitrovm/internal/kvm"
	"github.com/nitrovm/nitrovm/internal/memory"
)

// Limits and defaults of a VM.
const (
	// MinMemoryMiB is the smallest guest RAM accepted (the kernel
	// decompresses at 16 MiB and needs room above).
	MinMemoryMiB = 32
	// MaxCPUs is the largest vCPU count.
	MaxCPUs = x86.MaxCPUs
	// MaxDevices is the largest number of virtio-mmio devices.
	MaxDevices = x86.MaxVirtioDevices
	// panicGrace is how long the VM keeps running after a panic line, so the
	// rest of the kernel's panic report reaches the console.
	panicGrace = 500 * time.Millisecond
)

// Config describes a VM to build.
type Config struct {
	Kernel     io.ReaderAt         // bzImage.
	KernelSize int64               // bzImage size in bytes.
	Cmdline    string              // kernel command line; Build appends virtio_mmio.device= entries.
	Initrd     []*io.SectionReader // ramdisks, concatenated in order into guest RAM.
	MemoryMiB  uint64              // guest RAM in MiB.
	CPUs       int                 // vCPU count.
	Console    io.Writer           // serial output; nil discards it (panics are still detected).
	Devices    []virtio.Device     // each gets a virtio-mmio slot (4 KiB MMIO, own IRQ), in order.
	Logger     *slog.Logger        // diagnostics; nil discards them.
	// VCPUCPUs, when not empty, are the host CPUs the vCPU threads may
	// run on (each thread may use any of them); the VMM's other threads
	// keep the process's affinity. Build refuses a list that shares no CPU
	// with the process's affinity.
	VCPUCPUs []int
}

// ExitReason says why a VM stopped.
type ExitReason int

// Exit reasons.
const (
	// ExitReboot is a clean end: the guest reset (i8042, reboot=k), shut
	// down or halted.
	ExitReboot ExitReason = iota + 1
	// ExitPanic is a guest kernel panic seen on its console, a triple fault
	// or a KVM-reported guest crash.
	ExitPanic
	// ExitStopped means the context given to Run was cancelled.
	ExitStopped
	// ExitError is a VMM or KVM failure.
	ExitError
)

// String returns the reason's name.
func (r ExitReason) String() string {
	switch r {
	case ExitReboot:
		return "reboot"
	case ExitPanic:
		return "panic"
	case ExitStopped:
		return "stopped"
	case ExitError:
		return "error"
	}
	return fmt.Sprintf("ExitReason(%d)", int(r))
}

// Exit is why and how a VM stopped.
type Exit struct {
	Reason ExitReason // what kind of end.
	Detail string     // human-readable detail, e.g. the guest's panic line.
}

// VM is a built microVM.
type VM struct {
	logger  *slog.Logger
	sys     *kvm.System
	vm      *kvm.VM
	mem     *memory.Guest
	vcpus   []*vcpu
	irqs    []*irqfdInterrupt
	notify  []*queueNotifier
	pio     bus
	mmio    bus
	console *consoleScanner
	ran     bool
	start   time.Time // when Build began; exit times count from it.
	dumps   dumpState // serializes Dump.
	// debuggers are the transports and devices whose state a dump shows.
	debuggers []debugger
	stats     *ExitStats // KVM's statistics, read when Run returns.
	// vcpuCPUs confines the vCPU threads (Config.VCPUCPUs); nil leaves
	// them with the process's affinity.
	vcpuCPUs *unix.CPUSet

	mu        sync.Mutex
	exit      *Exit         // first stop request; guarded by mu.
	panicLine string        // first guest panic line; guarded by mu.
	stopped   chan struct{} // closed on the first stop request.
}

// Build creates the VM described by cfg with everything set up and its
// vCPUs not yet running.
func Build(ctx context.Context, cfg Config) (_ *VM, err error) {
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	var vcpuCPUs *unix.CPUSet
	if len(cfg.VCPUCPUs) > 0 {
		set, err := vcpuAffinity(cfg.VCPUCPUs)
		if err != nil {
			return nil, fmt.Errorf("vmm: %w", err)
		}
		vcpuCPUs = &set
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	kernel, err := x86.ParseBzImage(cfg.Kernel, cfg.KernelSize)
	if err != nil {
		return nil, fmt.Errorf("vmm: kernel: %w", err)
	}
	v := &VM{logger: logger, stopped: make(chan struct{}), start: time.Now(), vcpuCPUs: vcpuCPUs}
	if vcpuCPUs != nil {
		logger.Debug("vCPU threads confined", "cpus", CPUList(*vcpuCPUs))
	}
	defer func() {
		if err != nil {
			v.Close()
		}
	}()
	if v.sys, err = kvm.Open(); err != nil {
		return nil, fmt.Errorf("vmm: %w", err)
	}
	if err := checkCaps(v.sys, kvm.DevicePath); err != nil {
		return nil, err
	}
	if err := v.createVM(cfg.MemoryMiB << 20); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	devs, err := v.attachDevices(cfg)
	if err != nil {
		return nil, err
	}
	entry, err := v.loadGuest(cfg, kernel, devs)
	if err != nil {
		return nil, err
	}
	if err := v.createVCPUs(cfg.CPUs, entry); err != nil {
		return nil, err
	}
	logger.Debug("vm built", "memory_mib", cfg.MemoryMiB, "cpus", cfg.CPUs, "devices", len(devs), "entry", fmt.Sprintf("%#x", entry))
	return v, nil
}

// validate checks cfg's fields.
func validate(cfg *Config) error {
	switch {
	case cfg.Kernel == nil || cfg.KernelSize <= 0:
		return errors.New("vmm: no kernel")
	case cfg.CPUs < 1 || cfg.CPUs > MaxCPUs:
		return fmt.Errorf("vmm: %d vCPUs requested, want 1..%d", cfg.CPUs, MaxCPUs)
	case cfg.MemoryMiB < MinMemoryMiB || cfg.MemoryMiB > 1<<20:
		return fmt.Errorf("vmm: %d MiB of memory requested, want %d..%d", cfg.MemoryMiB, MinMemoryMiB, 1<<20)
	case len(cfg.Devices) > MaxDevices:
		return fmt.Errorf("vmm: %d virtio devices, at most %d", len(cfg.Devices), MaxDevices)
	}
	return nil
}

// createVM creates the KVM VM, its interrupt controllers and PIT, and its RAM.
func (v *VM) createVM(ramBytes uint64) error {
	var err error
	if v.vm, err = v.sys.CreateVM(); err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	// The TSS and identity-map pages matter on Intel only; harmless elsewhere.
	if err := v.vm.SetIdentityMapAddr(x86.IdentityMapAddr); err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	if err := v.vm.SetTSSAddr(x86.TSSAddr); err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	if err := v.vm.CreateIRQChip(); err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	if err := v.vm.CreatePIT2(); err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	if v.mem, err = memory.Map(x86.RAMLayout(ramBytes)); err != nil {
		return fmt.Errorf("vmm: guest RAM: %w", err)
	}
	for i, r := range v.mem.Regions() {
		if err := v.vm.SetUserMemoryRegion(uint32(i), r.GPA, r.Data); err != nil {
			return fmt.Errorf("vmm: %w", err)
		}
	}
	return nil
}

// attachDevices puts the UART, the i8042, the legacy-port sinks and one
// virtio-mmio transport per cfg.Devices on the buses, with an ioeventfd per
// virtqueue on its QueueNotify register, and returns the virtio-mmio slots
// to announce.
func (v *VM) attachDevices(cfg Config) ([]x86.MMIODevice, error) {
	v.console = &consoleScanner{out: cfg.Console, lines: make([][]byte, cfg.CPUs), onPanic: v.guestPanicked}
	uart := serial.New(v.console, lineInterrupt{vm: v.vm, gsi: x86.SerialIRQ})
	if err := v.pio.add(x86.SerialPort, x86.SerialPortCount, uart); err != nil {
		return nil, err
	}
	kbd := i8042.New(func() { v.requestStop(Exit{Reason: ExitReboot, Detail: "guest reset through the i8042 controller"}) })
	if err := v.pio.add(x86.I8042DataPort, i8042.PortCount, kbd); err != nil {
		return nil, err
	}
	for _, r := range []struct{ base, n uint64 }{
		{0x70, 2},  // CMOS RTC: absent, reads 0xff.
		{0x80, 1},  // POST code / I/O delay.
		{0x87, 1},  // DMA page register.
		{0x2e8, 8}, // COM4
		{0x2f8, 8}, // COM2
		{0x3e8, 8}, // COM3
		{0xcf8, 8}, // PCI configuration mechanism #1: no PCI.
	} {
		if err := v.pio.add(r.base, r.n, sink{}); err != nil {
			return nil, err
		}
	}
	var slots []x86.MMIODevice
	for i, d := range cfg.Devices {
		addr, gsi := x86.VirtioSlot(i)
		irq, err := v.newIRQ(gsi)
		if err != nil {
			return nil, err
		}
		t := virtio.NewMMIO(d, v.mem, irq, v.logger)
		if err := v.mmio.add(addr, virtio.MMIOSize, t); err != nil {
			return nil, err
		}
		for q := range d.QueueMaxSizes() {
			n, err := newQueueNotifier(v.vm, addr+virtio.MMIOQueueNotifyOffset, uint32(q), t, virtio.MMIOQueueNotifyOffset)
			if err != nil {
				return nil, err
			}
			v.notify = append(v.notify, n)
		}
		v.debuggers = append(v.debuggers, t)
		if dd, ok := d.(debugger); ok {
			v.debuggers = append(v.debuggers, dd)
		}
		slots = append(slots, x86.MMIODevice{Addr: addr, Bytes: virtio.MMIOSize, IRQ: gsi})
	}
	return slots, nil
}

// newIRQ returns an irqfd-backed interrupt on gsi, closed with the VM.
func (v *VM) newIRQ(gsi uint32) (*irqfdInterrupt, error) {
	irq, err := newIRQFD(v.vm, gsi)
	if err != nil {
		return nil, err
	}
	v.irqs = append(v.irqs, irq)
	return irq, nil
}

// loadGuest writes the kernel, initrd, command line, boot tables, MP and
// ACPI tables and zero page into guest RAM and returns the entry point.
func (v *VM) loadGuest(cfg Config, k *x86.BzImage, devs []x86.MMIODevice) (uint64, error) {
	ramBytes := cfg.MemoryMiB << 20
	entry, err := k.Load(v.mem)
	if err != nil {
		return 0, fmt.Errorf("vmm: %w", err)
	}
	var initrdBytes uint64
	for _, r := range cfg.Initrd {
		initrdBytes += uint64(r.Size())
	}
	var initrdAddr uint64
	if initrdBytes > 0 {
		if initrdAddr, err = x86.InitrdAddr(k, ramBytes, initrdBytes); err != nil {
			return 0, fmt.Errorf("vmm: %w", err)
		}
		addr := initrdAddr
		for i, r := range cfg.Initrd {
			dst, err := v.mem.Slice(addr, uint64(r.Size()))
			if err != nil {
				return 0, fmt.Errorf("vmm: ramdisk %d: %w", i, err)
			}
			if _, err := r.ReadAt(dst, 0); err != nil {
				return 0, fmt.Errorf("vmm: read ramdisk %d: %w", i, err)
			}
			addr += uint64(r.Size())
		}
	}
	cmdline := strings.TrimSpace(cfg.Cmdline)
	if extra := x86.VirtioCmdline(devs); extra != "" {
		cmdline = strings.TrimSpace(cmdline + " " + extra)
	}
	if err := x86.WriteCmdline(v.mem, k, cmdline); err != nil {
		return 0, fmt.Errorf("vmm: %w", err)
	}
	if err := x86.WriteBootTables(v.mem); err != nil {
		return 0, fmt.Errorf("vmm: %w", err)
	}
	mp, err := x86.MPTable(cfg.CPUs)
	if err != nil {
		return 0, fmt.Errorf("vmm: %w", err)
	}
	if err := v.mem.Write(x86.MPTableAddr, mp); err != nil {
		return 0, fmt.Errorf("vmm: write MP table: %w", err)
	}
	acpi, err := x86.ACPITables(cfg.CPUs, devs)
	if err != nil {
		return 0, fmt.Errorf("vmm: %w", err)
	}
	if err := v.mem.Write(x86.ACPIAddr, acpi); err != nil {
		return 0, fmt.Errorf("vmm: write ACPI tables: %w", err)
	}
	zp, err := x86.ZeroPage(k, x86.BootConfig{
		Cmdline: cmdline, InitrdAddr: initrdAddr, InitrdSize: initrdBytes,
		E820: x86.E820Map(ramBytes), RSDPAddr: x86.ACPIAddr,
	})
	if err != nil {
		return 0, fmt.Errorf("vmm: %w", err)
	}
	if err := v.mem.Write(x86.ZeroPageAddr, zp); err != nil {
		return 0, fmt.Errorf("vmm: write zero page: %w", err)
	}
	v.logger.Debug("guest loaded", "cmdline", cmdline, "initrd_addr", fmt.Sprintf("%#x", initrdAddr), "initrd_bytes", initrdBytes)
	return entry, nil
}

// createVCPUs creates n vCPUs with CPUID, MSRs, FPU and LAPIC set; vCPU 0
// (the bootstrap processor) also gets the 64-bit boot registers. XCR0 is
// left at its reset value (x87 only), as Firecracker and QEMU leave it: the
// guest kernel programs it with XSETBV.
func (v *VM) createVCPUs(n int, entry uint64) error {
	supported, err := v.sys.SupportedCPUID()
	if err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	// KVM emulates the TSC-deadline timer mode of the local APIC but leaves
	// the CPUID bit to the VMM (Documentation/virt/kvm/api.rst,
	// KVM_GET_SUPPORTED_CPUID); without it every timer reprogram is an
	// xAPIC MMIO write to TMICT.
	deadline, err := v.sys.CheckExtension(kvm.CapTSCDeadline)
	if err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	if deadline > 0 {
		supported = x86.WithTSCDeadline(supported)
	}
	// KVM leaves the brand string empty (the guest would call itself
	// "06/06"); show the host's, as Nitro and QEMU's -cpu host do.
	if brand, err := readHostCPUBrand(); err != nil {
		v.logger.Debug("no host processor name for the guest", "err", err)
	} else {
		supported = x86.WithBrandString(supported, brand)
	}
	for i := range n {
		c, err := v.vm.CreateVCPU(i)
		if err != nil {
			return fmt.Errorf("vmm: %w", err)
		}
		v.vcpus = append(v.vcpus, newVCPU(c))
		if err := setupVCPU(c, x86.NormalizeCPUID(supported, i, n), entry); err != nil {
			return fmt.Errorf("vmm: vCPU %d: %w", i, err)
		}
	}
	return nil
}

// setupVCPU sets one vCPU's state.
func setupVCPU(c *kvm.VCPU, cpuid []kvm.CPUIDEntry, entry uint64) error {
	if err := c.SetCPUID(cpuid); err != nil {
		return err
	}
	if err := c.SetMSRs(x86.BootMSRs()); err != nil {
		return err
	}
	if err := c.SetFPU(x86.BootFPU()); err != nil {
		return err
	}
	l, err := c.LAPIC()
	if err != nil {
		return err
	}
	x86.SetLINT(&l)
	if err := c.SetLAPIC(l); err != nil {
		return err
	}
	if c.ID != 0 {
		return nil // APs wait for INIT/SIPI from the BSP.
	}
	if err := c.SetRegs(x86.BootRegs(entry)); err != nil {
		return err
	}
	s, err := c.Sregs()
	if err != nil {
		return err
	}
	return c.SetSregs(x86.BootSregs(s))
}

// guestPanicked records the guest's panic line and stops the VM shortly after.
func (v *VM) guestPanicked(line string) {
	v.mu.Lock()
	if v.panicLine == "" {
		v.panicLine = line
	}
	v.mu.Unlock()
	v.logger.Debug("guest panic seen on console", "line", line)
	time.AfterFunc(panicGrace, func() { v.requestStop(Exit{Reason: ExitPanic, Detail: line}) })
}

// requestStop records why the VM stops (the first request wins) and wakes Run.
// A reset or crash after a panic line is reported as that panic.
func (v *VM) requestStop(e Exit) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.exit != nil {
		return
	}
	if (e.Reason == ExitReboot || e.Reason == ExitPanic) && v.panicLine != "" {
		e = Exit{Reason: ExitPanic, Detail: v.panicLine}
	}
	v.exit = &e
	close(v.stopped)
}

// Close releases the VM's vCPUs, interrupts, KVM handles and guest RAM.
// Run must have returned.
func (v *VM) Close() error {
	var errs []error
	for _, vc := range v.vcpus {
		errs = append(errs, vc.c.Close())
	}
	v.vcpus = nil
	for _, n := range v.notify {
		errs = append(errs, n.close())
	}
	v.notify = nil
	for _, i := range v.irqs {
		errs = append(errs, i.close())
	}
	v.irqs = nil
	if v.vm != nil {
		errs = append(errs, v.vm.Close())
		v.vm = nil
	}
	if v.mem != nil {
		errs = append(errs, v.mem.Close())
		v.mem = nil
	}
	if v.sys != nil {
		errs = append(errs, v.sys.Close())
		v.sys = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("vmm: close: %w", err)
	}
	return nil
}
