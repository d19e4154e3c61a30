package x86

// Guest-physical memory layout of a nitrovm x86-64 guest. Low memory follows
// the Linux x86-64 boot protocol as Firecracker uses it
// (Documentation/arch/x86/boot.rst, firecracker src/vmm/src/arch/x86_64/layout.rs).
const (
	// GDTAddr is where the boot GDT lives.
	GDTAddr = 0x500
	// IDTAddr is where the (empty) boot IDT lives, just after the GDT.
	IDTAddr = 0x520
	// ZeroPageAddr is where struct boot_params (the "zero page") lives.
	ZeroPageAddr = 0x7000
	// BootStackAddr is the initial stack pointer of the boot vCPU.
	BootStackAddr = 0x8ff0
	// PML4Addr is the boot page map level 4 table.
	PML4Addr = 0x9000
	// PDPTAddr is the boot page directory pointer table.
	PDPTAddr = 0xa000
	// PDAddr is the boot page directory (512 x 2 MiB pages = the first 1 GiB).
	PDAddr = 0xb000
	// CmdlineAddr is where the kernel command line (NUL-terminated) lives.
	CmdlineAddr = 0x20000
	// CmdlineMaxBytes bounds the command line, NUL included (it must end
	// before EBDAAddr; the kernel's own cmdline_size may be smaller).
	CmdlineMaxBytes = 0x10000
	// EBDAAddr is the start of the Extended BIOS Data Area: low RAM ends here.
	EBDAAddr = 0x9fc00
	// MPTableAddr is where the MP floating pointer and table live (in the
	// EBDA, where Linux looks first).
	MPTableAddr = EBDAAddr
	// MPTableMaxBytes is the room for the MP table (the 1 KiB EBDA).
	MPTableMaxBytes = 0xa0000 - EBDAAddr
	// ACPIAddr is where the ACPI RSDP and the tables after it live (the BIOS
	// area Linux scans for "RSD PTR ").
	ACPIAddr = 0xe0000
	// ACPIMaxBytes is the room for all ACPI tables, up to HighMemAddr.
	ACPIMaxBytes = HighMemAddr - ACPIAddr
	// HighMemAddr is the start of RAM above the legacy hole (1 MiB).
	HighMemAddr = 0x100000
	// KernelAddr is where the protected-mode kernel of a bzImage is loaded (1 MiB).
	KernelAddr = HighMemAddr
	// KernelDecompressAddr is where a relocatable bzImage loaded lower
	// decompresses itself (CONFIG_PHYSICAL_START, 16 MiB by default).
	KernelDecompressAddr = 0x100_0000
	// KernelEntryOffsetBytes is the offset of the 64-bit entry point from KernelAddr.
	KernelEntryOffsetBytes = 0x200
	// MMIOGapAddr is the start of the 32-bit MMIO hole below 4 GiB (3.25 GiB):
	// RAM beyond it moves above 4 GiB.
	MMIOGapAddr = 0xd000_0000
	// MMIOGapEndAddr is the end of the 32-bit MMIO hole (4 GiB).
	MMIOGapEndAddr = 0x1_0000_0000
	// VirtioMMIOAddr is the base of the first virtio-mmio slot, at the start of the gap.
	VirtioMMIOAddr = MMIOGapAddr
	// VirtioMMIOSlotBytes is the size of each virtio-mmio slot (4 KiB).
	VirtioMMIOSlotBytes = 0x1000
	// IOAPICAddr is the MMIO base of the in-kernel IOAPIC.
	IOAPICAddr = 0xfec0_0000
	// LAPICAddr is the MMIO base of the local APICs.
	LAPICAddr = 0xfee0_0000
	// IdentityMapAddr is the one-page EPT identity map KVM on Intel needs.
	IdentityMapAddr = 0xfffb_c000
	// TSSAddr is the three-page TSS region KVM on Intel needs (after the identity map).
	TSSAddr = 0xfffb_d000
)

// Legacy I/O ports and IRQs.
const (
	// SerialPort is the base port of COM1 (8250 UART, 8 ports).
	SerialPort = 0x3f8
	// SerialPortCount is the number of ports a UART decodes.
	SerialPortCount = 8
	// SerialIRQ is COM1's ISA interrupt line.
	SerialIRQ = 4
	// I8042DataPort is the i8042 keyboard controller's data port.
	I8042DataPort = 0x60
	// I8042CommandPort is the i8042 status (read) and command (write) port.
	I8042CommandPort = 0x64
	// I8042IRQ is the keyboard's ISA interrupt line (never raised: no keyboard).
	I8042IRQ = 1
	// VirtioFirstIRQ is the interrupt line of the first virtio-mmio slot;
	// slot i uses VirtioFirstIRQ+i.
	VirtioFirstIRQ = 5
	// IOAPICPins is the number of IOAPIC input pins (GSIs 0-23).
	IOAPICPins = 24
	// MaxVirtioDevices is how many virtio-mmio slots fit the IOAPIC's pins.
	MaxVirtioDevices = IOAPICPins - VirtioFirstIRQ
	// MaxCPUs bounds the vCPU count (the MP table must fit in the 1 KiB EBDA).
	MaxCPUs = 32
)

// VirtioSlot returns the MMIO base and IRQ of virtio-mmio slot i.
func VirtioSlot(i int) (addr uint64, irq uint32) {
	return VirtioMMIOAddr + uint64(i)*VirtioMMIOSlotBytes, uint32(VirtioFirstIRQ + i)
}
