package kvm

import (
	"testing"
	"unsafe"
)

func TestStructSizes(t *testing.T) {
	// Sizes from the kernel's uapi headers (sizeof on x86-64).
	tests := []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"kvm_regs", unsafe.Sizeof(Regs{}), 0x90},
		{"kvm_segment", unsafe.Sizeof(Segment{}), 0x18},
		{"kvm_dtable", unsafe.Sizeof(DTable{}), 0x10},
		{"kvm_sregs", unsafe.Sizeof(Sregs{}), 0x138},
		{"kvm_fpu", unsafe.Sizeof(FPU{}), 0x1a0},
		{"kvm_cpuid_entry2", unsafe.Sizeof(CPUIDEntry{}), 0x28},
		{"kvm_cpuid2", unsafe.Sizeof(cpuid2{}), 8 + maxCPUIDEntries*0x28},
		{"kvm_msr_entry", unsafe.Sizeof(MSR{}), 0x10},
		{"kvm_msrs", unsafe.Sizeof(msrs{}), 8 + maxMSREntries*0x10},
		{"kvm_userspace_memory_region", unsafe.Sizeof(userspaceMemoryRegion{}), 0x20},
		{"kvm_pit_config", unsafe.Sizeof(pitConfig{}), 0x40},
		{"kvm_irqfd", unsafe.Sizeof(irqfd{}), 0x20},
		{"kvm_ioeventfd", unsafe.Sizeof(ioeventfd{}), 0x40},
		{"kvm_irq_level", unsafe.Sizeof(irqLevel{}), 0x8},
		{"kvm_lapic_state", unsafe.Sizeof(LAPICState{}), 0x400},
		{"kvm_xcrs", unsafe.Sizeof(xcrs{}), 0x188},
		{"kvm_vcpu_events", unsafe.Sizeof(VCPUEvents{}), 0x40},
		{"kvm_mp_state", unsafe.Sizeof(mpState{}), 0x4},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("sizeof %s: got %#x, want %#x", tt.name, tt.got, tt.want)
		}
	}
}

func TestIoctlSizes(t *testing.T) {
	// The size field (bits 16..29) of each _IOR/_IOW/_IOWR number must match
	// the struct passed with it.
	tests := []struct {
		name string
		req  uintptr
		size uintptr
	}{
		{"KVM_SET_USER_MEMORY_REGION", _KVM_SET_USER_MEMORY_REGION, unsafe.Sizeof(userspaceMemoryRegion{})},
		{"KVM_GET_REGS", _KVM_GET_REGS, unsafe.Sizeof(Regs{})},
		{"KVM_SET_SREGS", _KVM_SET_SREGS, unsafe.Sizeof(Sregs{})},
		{"KVM_SET_FPU", _KVM_SET_FPU, unsafe.Sizeof(FPU{})},
		{"KVM_GET_LAPIC", _KVM_GET_LAPIC, unsafe.Sizeof(LAPICState{})},
		{"KVM_CREATE_PIT2", _KVM_CREATE_PIT2, unsafe.Sizeof(pitConfig{})},
		{"KVM_IRQFD", _KVM_IRQFD, unsafe.Sizeof(irqfd{})},
		{"KVM_IOEVENTFD", _KVM_IOEVENTFD, unsafe.Sizeof(ioeventfd{})},
		{"KVM_IRQ_LINE", _KVM_IRQ_LINE, unsafe.Sizeof(irqLevel{})},
		{"KVM_SET_XCRS", _KVM_SET_XCRS, unsafe.Sizeof(xcrs{})},
		{"KVM_GET_XCRS", _KVM_GET_XCRS, unsafe.Sizeof(xcrs{})},
		{"KVM_GET_VCPU_EVENTS", _KVM_GET_VCPU_EVENTS, unsafe.Sizeof(VCPUEvents{})},
		{"KVM_GET_MP_STATE", _KVM_GET_MP_STATE, unsafe.Sizeof(mpState{})},
	}
	for _, tt := range tests {
		if got := (tt.req >> 16) & 0x3fff; got != tt.size {
			t.Errorf("%s size field: got %#x, want %#x", tt.name, got, tt.size)
		}
	}
}

func TestVCPUEventsOffsets(t *testing.T) {
	// Field offsets of struct kvm_vcpu_events on x86-64.
	var e VCPUEvents
	tests := []struct {
		name      string
		got, want uintptr
	}{
		{"exception.error_code", unsafe.Offsetof(e.ExceptionErrorCode), 4},
		{"interrupt", unsafe.Offsetof(e.InterruptInjected), 8},
		{"nmi", unsafe.Offsetof(e.NMIInjected), 12},
		{"sipi_vector", unsafe.Offsetof(e.SIPIVector), 16},
		{"flags", unsafe.Offsetof(e.Flags), 20},
		{"smi", unsafe.Offsetof(e.SMISMM), 24},
		{"triple_fault", unsafe.Offsetof(e.TripleFaultPending), 28},
		{"exception_has_payload", unsafe.Offsetof(e.ExceptionHasPayload), 55},
		{"exception_payload", unsafe.Offsetof(e.ExceptionPayload), 56},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("offsetof %s: got %d, want %d", tt.name, tt.got, tt.want)
		}
	}
}
