package kvm

// Ioctl names one ioctl request this package issues.
type Ioctl struct {
	Name    string // the request's name in include/uapi/linux/kvm.h
	Request uint64 // its request number
}

// Ioctls returns every ioctl request this package issues, for the VMM's
// seccomp allowlist (internal/jail): this package is the only one that
// issues KVM ioctls, so an ioctl added here without being listed would be
// refused by the filter (TestIoctlsComplete checks the list).
func Ioctls() []Ioctl {
	return []Ioctl{
		{"KVM_GET_API_VERSION", _KVM_GET_API_VERSION},
		{"KVM_CREATE_VM", _KVM_CREATE_VM},
		{"KVM_CHECK_EXTENSION", _KVM_CHECK_EXTENSION},
		{"KVM_GET_VCPU_MMAP_SIZE", _KVM_GET_VCPU_MMAP_SIZE},
		{"KVM_GET_SUPPORTED_CPUID", _KVM_GET_SUPPORTED_CPUID},
		{"KVM_CREATE_VCPU", _KVM_CREATE_VCPU},
		{"KVM_SET_USER_MEMORY_REGION", _KVM_SET_USER_MEMORY_REGION},
		{"KVM_SET_TSS_ADDR", _KVM_SET_TSS_ADDR},
		{"KVM_SET_IDENTITY_MAP_ADDR", _KVM_SET_IDENTITY_MAP_ADDR},
		{"KVM_CREATE_IRQCHIP", _KVM_CREATE_IRQCHIP},
		{"KVM_IRQ_LINE", _KVM_IRQ_LINE},
		{"KVM_IRQFD", _KVM_IRQFD},
		{"KVM_CREATE_PIT2", _KVM_CREATE_PIT2},
		{"KVM_IOEVENTFD", _KVM_IOEVENTFD},
		{"KVM_GET_STATS_FD", _KVM_GET_STATS_FD},
		{"KVM_RUN", _KVM_RUN},
		{"KVM_GET_REGS", _KVM_GET_REGS},
		{"KVM_SET_REGS", _KVM_SET_REGS},
		{"KVM_GET_SREGS", _KVM_GET_SREGS},
		{"KVM_SET_SREGS", _KVM_SET_SREGS},
		{"KVM_SET_MSRS", _KVM_SET_MSRS},
		{"KVM_GET_FPU", _KVM_GET_FPU},
		{"KVM_SET_FPU", _KVM_SET_FPU},
		{"KVM_GET_LAPIC", _KVM_GET_LAPIC},
		{"KVM_SET_LAPIC", _KVM_SET_LAPIC},
		{"KVM_SET_CPUID2", _KVM_SET_CPUID2},
		{"KVM_SET_XCRS", _KVM_SET_XCRS},
		{"KVM_GET_MP_STATE", _KVM_GET_MP_STATE},
		{"KVM_GET_VCPU_EVENTS", _KVM_GET_VCPU_EVENTS},
		{"KVM_GET_XCRS", _KVM_GET_XCRS},
	}
}
