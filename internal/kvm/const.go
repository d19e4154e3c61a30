package kvm

// ioctl request numbers, precomputed from include/uapi/linux/kvm.h
// (KVMIO = 0xAE) for x86-64.
const (
	// System ioctls.
	_KVM_GET_API_VERSION     = 0xae00
	_KVM_CREATE_VM           = 0xae01
	_KVM_CHECK_EXTENSION     = 0xae03
	_KVM_GET_VCPU_MMAP_SIZE  = 0xae04
	_KVM_GET_SUPPORTED_CPUID = 0xc008ae05

	// VM ioctls.
	_KVM_CREATE_VCPU            = 0xae41
	_KVM_SET_USER_MEMORY_REGION = 0x4020ae46
	_KVM_SET_TSS_ADDR           = 0xae47
	_KVM_SET_IDENTITY_MAP_ADDR  = 0x4008ae48
	_KVM_CREATE_IRQCHIP         = 0xae60
	_KVM_IRQ_LINE               = 0x4008ae61
	_KVM_IRQFD                  = 0x4020ae76
	_KVM_CREATE_PIT2            = 0x4040ae77
	_KVM_IOEVENTFD              = 0x4040ae79
	_KVM_GET_STATS_FD           = 0xaece // also a vCPU ioctl.

	// vCPU ioctls.
	_KVM_RUN        = 0xae80
	_KVM_GET_REGS   = 0x8090ae81
	_KVM_SET_REGS   = 0x4090ae82
	_KVM_GET_SREGS  = 0x8138ae83
	_KVM_SET_SREGS  = 0x4138ae84
	_KVM_SET_MSRS   = 0x4008ae89
	_KVM_GET_FPU    = 0x81a0ae8c
	_KVM_SET_FPU    = 0x41a0ae8d
	_KVM_GET_LAPIC  = 0x8400ae8e
	_KVM_SET_LAPIC  = 0x4400ae8f
	_KVM_SET_CPUID2 = 0x4008ae90
	_KVM_SET_XCRS   = 0x4188aea7

	// vCPU state readers for diagnostics.
	_KVM_GET_MP_STATE    = 0x8004ae98
	_KVM_GET_VCPU_EVENTS = 0x8040ae9f
	_KVM_GET_XCRS        = 0x8188aea6
)

// _KVM_API_VERSION is the only stable KVM API version (include/uapi/linux/kvm.h).
const _KVM_API_VERSION = 12

// Capability numbers for KVM_CHECK_EXTENSION (include/uapi/linux/kvm.h).
const (
	CapIRQChip       = 0   // KVM_CAP_IRQCHIP
	CapUserMemory    = 3   // KVM_CAP_USER_MEMORY
	CapSetTSSAddr    = 4   // KVM_CAP_SET_TSS_ADDR
	CapExtCPUID      = 7   // KVM_CAP_EXT_CPUID
	CapIRQFD         = 32  // KVM_CAP_IRQFD
	CapPIT2          = 33  // KVM_CAP_PIT2
	CapIOEventFD     = 36  // KVM_CAP_IOEVENTFD
	CapXCRS          = 56  // KVM_CAP_XCRS
	CapVCPUEvents    = 41  // KVM_CAP_VCPU_EVENTS
	CapTSCDeadline   = 72  // KVM_CAP_TSC_DEADLINE_TIMER
	CapImmediateExit = 136 // KVM_CAP_IMMEDIATE_EXIT
	CapBinaryStatsFD = 203 // KVM_CAP_BINARY_STATS_FD
)

// Exit reasons in kvm_run.exit_reason (include/uapi/linux/kvm.h).
const (
	ExitUnknown       = 0  // KVM_EXIT_UNKNOWN
	ExitException     = 1  // KVM_EXIT_EXCEPTION
	ExitIO            = 2  // KVM_EXIT_IO
	ExitHLT           = 5  // KVM_EXIT_HLT
	ExitMMIO          = 6  // KVM_EXIT_MMIO
	ExitShutdown      = 8  // KVM_EXIT_SHUTDOWN (triple fault)
	ExitFailEntry     = 9  // KVM_EXIT_FAIL_ENTRY
	ExitIntr          = 10 // KVM_EXIT_INTR
	ExitInternalError = 17 // KVM_EXIT_INTERNAL_ERROR
	ExitSystemEvent   = 24 // KVM_EXIT_SYSTEM_EVENT
)

// System event types in kvm_run.system_event.type (include/uapi/linux/kvm.h).
const (
	SystemEventShutdown = 1 // KVM_SYSTEM_EVENT_SHUTDOWN
	SystemEventReset    = 2 // KVM_SYSTEM_EVENT_RESET
	SystemEventCrash    = 3 // KVM_SYSTEM_EVENT_CRASH
)

// Flags, from include/uapi/linux/kvm.h.
const (
	_KVM_PIT_SPEAKER_DUMMY        = 0x1
	_KVM_IOEVENTFD_FLAG_DATAMATCH = 0x1
	_KVM_IOEVENTFD_FLAG_PIO       = 0x2
	_KVM_IOEVENTFD_FLAG_DEASSIGN  = 0x4
	_KVM_IRQFD_FLAG_DEASSIGN      = 0x1
)

// kvm_run layout offsets (include/uapi/linux/kvm.h, struct kvm_run).
const (
	runImmediateExit = 0x01 // __u8 immediate_exit
	runExitReason    = 0x08 // __u32 exit_reason
	runUnion         = 0x20 // start of the exit-specific union
)

// maxCPUIDEntries bounds KVM_GET_SUPPORTED_CPUID (the kernel's
// KVM_MAX_CPUID_ENTRIES, arch/x86/include/asm/kvm_host.h).
const maxCPUIDEntries = 256

// maxXCRs is KVM_MAX_XCRS (arch/x86/include/uapi/asm/kvm.h).
const maxXCRs = 16

// maxMSREntries bounds one KVM_SET_MSRS call made by this package.
const maxMSREntries = 32

// Multiprocessing states in struct kvm_mp_state (include/uapi/linux/kvm.h).
const (
	MPStateRunnable      = 0 // KVM_MP_STATE_RUNNABLE
	MPStateUninitialized = 1 // KVM_MP_STATE_UNINITIALIZED
	MPStateInitReceived  = 2 // KVM_MP_STATE_INIT_RECEIVED
	MPStateHalted        = 3 // KVM_MP_STATE_HALTED
	MPStateSIPIReceived  = 4 // KVM_MP_STATE_SIPI_RECEIVED
	MPStateAPResetHold   = 9 // KVM_MP_STATE_AP_RESET_HOLD
)
