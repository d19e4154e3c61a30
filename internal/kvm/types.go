package kvm

// Regs is struct kvm_regs (arch/x86/include/uapi/asm/kvm.h).
type Regs struct {
	RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11, R12, R13, R14, R15   uint64
	RIP, RFLAGS                            uint64
}

// Segment is struct kvm_segment (arch/x86/include/uapi/asm/kvm.h).
type Segment struct {
	Base     uint64
	Limit    uint32
	Selector uint16
	Type     uint8
	Present  uint8
	DPL      uint8
	DB       uint8
	S        uint8
	L        uint8
	G        uint8
	AVL      uint8
	Unusable uint8
	_        uint8
}

// DTable is struct kvm_dtable (arch/x86/include/uapi/asm/kvm.h).
type DTable struct {
	Base  uint64
	Limit uint16
	_     [3]uint16
}

// Sregs is struct kvm_sregs (arch/x86/include/uapi/asm/kvm.h).
type Sregs struct {
	CS, DS, ES, FS, GS, SS  Segment
	TR, LDT                 Segment
	GDT, IDT                DTable
	CR0, CR2, CR3, CR4, CR8 uint64
	EFER                    uint64
	APICBase                uint64
	InterruptBitmap         [4]uint64
}

// FPU is struct kvm_fpu (arch/x86/include/uapi/asm/kvm.h).
type FPU struct {
	FPR        [8][16]uint8
	FCW        uint16
	FSW        uint16
	FTWX       uint8
	_          uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]uint8
	MXCSR      uint32
	_          uint32
}

// CPUIDEntry is struct kvm_cpuid_entry2 (arch/x86/include/uapi/asm/kvm.h).
type CPUIDEntry struct {
	Function uint32
	Index    uint32
	Flags    uint32
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
	_        [3]uint32
}

// cpuid2 is struct kvm_cpuid2 with its flexible entries array sized to
// maxCPUIDEntries.
type cpuid2 struct {
	nent    uint32
	_       uint32
	entries [maxCPUIDEntries]CPUIDEntry
}

// MSR is struct kvm_msr_entry (arch/x86/include/uapi/asm/kvm.h).
type MSR struct {
	Index uint32
	_     uint32
	Data  uint64
}

// msrs is struct kvm_msrs with its flexible entries array sized to
// maxMSREntries.
type msrs struct {
	nmsrs   uint32
	_       uint32
	entries [maxMSREntries]MSR
}

// xcrs is struct kvm_xcrs (arch/x86/include/uapi/asm/kvm.h), each
// struct kvm_xcr being {xcr, reserved, value}.
type xcrs struct {
	nrXCRs uint32
	flags  uint32
	xcrs   [maxXCRs]struct {
		xcr   uint32
		_     uint32
		value uint64
	}
	_ [16]uint64
}

// userspaceMemoryRegion is struct kvm_userspace_memory_region
// (include/uapi/linux/kvm.h).
type userspaceMemoryRegion struct {
	slot          uint32
	flags         uint32
	guestPhysAddr uint64
	memorySize    uint64
	userspaceAddr uint64
}

// pitConfig is struct kvm_pit_config (include/uapi/linux/kvm.h).
type pitConfig struct {
	flags uint32
	_     [15]uint32
}

// irqfd is struct kvm_irqfd (include/uapi/linux/kvm.h).
type irqfd struct {
	fd         uint32
	gsi        uint32
	flags      uint32
	resamplefd uint32
	_          [16]uint8
}

// ioeventfd is struct kvm_ioeventfd (include/uapi/linux/kvm.h).
type ioeventfd struct {
	datamatch uint64
	addr      uint64
	len       uint32
	fd        int32
	flags     uint32
	_         [36]uint8
}

// irqLevel is struct kvm_irq_level (include/uapi/linux/kvm.h).
type irqLevel struct {
	irq   uint32
	level uint32
}

// LAPICState is struct kvm_lapic_state (arch/x86/include/uapi/asm/kvm.h):
// the local APIC's 4 KiB register page truncated to its first 1 KiB.
type LAPICState struct {
	Regs [1024]byte
}

// VCPUEvents is struct kvm_vcpu_events (arch/x86/include/uapi/asm/kvm.h):
// pending or injected exception, interrupt, NMI and SMI, and a pending
// triple fault.
type VCPUEvents struct {
	ExceptionInjected     uint8
	ExceptionNr           uint8
	ExceptionHasErrorCode uint8
	ExceptionPending      uint8
	ExceptionErrorCode    uint32
	InterruptInjected     uint8
	InterruptNr           uint8
	InterruptSoft         uint8
	InterruptShadow       uint8
	NMIInjected           uint8
	NMIPending            uint8
	NMIMasked             uint8
	_                     uint8
	SIPIVector            uint32
	Flags                 uint32
	SMISMM                uint8
	SMIPending            uint8
	SMIInsideNMI          uint8
	SMILatchedInit        uint8
	TripleFaultPending    uint8
	_                     [26]uint8
	ExceptionHasPayload   uint8
	ExceptionPayload      uint64
}

// mpState is struct kvm_mp_state (include/uapi/linux/kvm.h).
type mpState struct {
	state uint32
}
