package x86

import (
	"encoding/binary"
	"fmt"

	"github.com/nitrovm/nitrovm/internal/kvm"
	"github.com/nitrovm/nitrovm/internal/memory"
)

// Boot GDT selectors: entry index * 8.
const (
	codeSelector = 1 << 3 // 64-bit code segment, GDT entry 1.
	dataSelector = 2 << 3 // data segment, GDT entry 2.
	tssSelector  = 3 << 3 // TSS, GDT entry 3.
)

// Control register and EFER bits (arch/x86/include/uapi/asm/processor-flags.h,
// arch/x86/include/asm/msr-index.h).
const (
	x86CR0PE   = 0x1
	x86CR0PG   = 0x8000_0000
	x86CR4PAE  = 0x20
	x86CR4LA57 = 0x1000
	eferLME    = 0x100
	eferLMA    = 0x400
	eferNXE    = 0x800
	rflagsRes1 = 0x2 // bit 1 of RFLAGS is always 1.
)

// Page table entry bits (arch/x86/include/asm/pgtable_types.h).
const (
	ptePresent = 0x1
	pteRW      = 0x2
	ptePS      = 0x80 // 2 MiB page in a PD entry.
)

// gdtEntry encodes a segment descriptor from the access/flags word (access
// byte in bits 0-7, flags nibble in bits 12-15), base and 20-bit limit
// (Intel SDM vol. 3, 3.4.5).
func gdtEntry(flags uint16, base, limit uint32) uint64 {
	return uint64(base&0xff00_0000)<<32 | uint64(flags&0xf0ff)<<40 |
		uint64(limit&0x000f_0000)<<32 | uint64(base&0x00ff_ffff)<<16 | uint64(limit&0xffff)
}

// BootGDT returns the boot GDT: null, 64-bit code, data, TSS.
func BootGDT() [4]uint64 {
	return [4]uint64{
		gdtEntry(0, 0, 0),
		gdtEntry(0xa09b, 0, 0xfffff), // present, DPL 0, code exec/read accessed; G, L.
		gdtEntry(0xc093, 0, 0xfffff), // present, DPL 0, data read/write accessed; G, D/B.
		gdtEntry(0x808b, 0, 0xfffff), // present, busy 64-bit TSS; G.
	}
}

// segmentFromGDT decodes descriptor e for selector sel into a kvm.Segment.
func segmentFromGDT(e uint64, sel uint16) kvm.Segment {
	s := kvm.Segment{
		Base:     (e>>16)&0xff_ffff | (e>>32)&0xff00_0000,
		Limit:    uint32(e&0xffff | (e>>32)&0xf_0000),
		Selector: sel,
		Type:     uint8(e>>40) & 0xf,
		S:        uint8(e>>44) & 1,
		DPL:      uint8(e>>45) & 3,
		Present:  uint8(e>>47) & 1,
		AVL:      uint8(e>>52) & 1,
		L:        uint8(e>>53) & 1,
		DB:       uint8(e>>54) & 1,
		G:        uint8(e>>55) & 1,
	}
	if s.G == 1 {
		s.Limit = s.Limit<<12 | 0xfff
	}
	if s.Present == 0 {
		s.Unusable = 1
	}
	return s
}

// WriteBootTables writes the boot GDT, an empty IDT and identity-mapping page
// tables for the first 1 GiB (2 MiB pages) into guest memory.
func WriteBootTables(mem *memory.Guest) error {
	var b [8 * 512]byte
	for i, e := range BootGDT() {
		binary.LittleEndian.PutUint64(b[i*8:], e)
	}
	if err := mem.Write(GDTAddr, b[:32]); err != nil {
		return fmt.Errorf("x86: write GDT: %w", err)
	}
	if err := mem.PutUint64(IDTAddr, 0); err != nil {
		return fmt.Errorf("x86: write IDT: %w", err)
	}
	for _, t := range pageTables() {
		if err := mem.Write(t.addr, t.data); err != nil {
			return fmt.Errorf("x86: write page table at %#x: %w", t.addr, err)
		}
	}
	return nil
}

type table struct {
	addr uint64
	data []byte
}

// pageTables returns the PML4, PDPT and PD identity-mapping [0, 1 GiB).
func pageTables() []table {
	pml4 := make([]byte, 0x1000)
	pdpt := make([]byte, 0x1000)
	pd := make([]byte, 0x1000)
	le := binary.LittleEndian
	le.PutUint64(pml4, PDPTAddr|ptePresent|pteRW)
	le.PutUint64(pdpt, PDAddr|ptePresent|pteRW)
	for i := range uint64(512) {
		le.PutUint64(pd[i*8:], i<<21|ptePresent|pteRW|ptePS)
	}
	return []table{{PML4Addr, pml4}, {PDPTAddr, pdpt}, {PDAddr, pd}}
}

// BootSregs returns s set up for the 64-bit boot protocol: flat segments
// from the boot GDT, paging on with the boot page tables, long mode active.
func BootSregs(s kvm.Sregs) kvm.Sregs {
	gdt := BootGDT()
	code := segmentFromGDT(gdt[1], codeSelector)
	data := segmentFromGDT(gdt[2], dataSelector)
	s.CS = code
	s.DS, s.ES, s.FS, s.GS, s.SS = data, data, data, data, data
	s.TR = segmentFromGDT(gdt[3], tssSelector)
	s.GDT = kvm.DTable{Base: GDTAddr, Limit: uint16(len(gdt)*8 - 1)}
	s.IDT = kvm.DTable{Base: IDTAddr, Limit: 7}
	s.CR3 = PML4Addr
	s.CR4 |= x86CR4PAE
	s.CR0 |= x86CR0PE | x86CR0PG
	s.EFER |= eferLME | eferLMA
	return s
}

// BootRegs returns the boot vCPU's registers for entering the kernel at entry.
func BootRegs(entry uint64) kvm.Regs {
	return kvm.Regs{
		RIP:    entry,
		RSP:    BootStackAddr,
		RBP:    BootStackAddr,
		RSI:    ZeroPageAddr,
		RFLAGS: rflagsRes1,
	}
}

// BootFPU returns the x87/SSE reset state Linux expects (FCW 0x37f, MXCSR 0x1f80).
func BootFPU() kvm.FPU {
	return kvm.FPU{FCW: 0x37f, MXCSR: 0x1f80}
}

// MSR numbers (arch/x86/include/asm/msr-index.h).
const (
	msrIA32SysenterCS  = 0x174
	msrIA32SysenterESP = 0x175
	msrIA32SysenterEIP = 0x176
	msrSTAR            = 0xc000_0081
	msrLSTAR           = 0xc000_0082
	msrCSTAR           = 0xc000_0083
	msrSyscallMask     = 0xc000_0084
	msrKernelGSBase    = 0xc000_0102
	msrIA32TSC         = 0x10
	msrIA32MiscEnable  = 0x1a0
	msrMTRRdefType     = 0x2ff

	miscEnableFastString = 1 << 0
	mtrrEnable           = 1 << 11
	mtrrTypeWB           = 6
)

// BootMSRs returns the MSR values every vCPU starts with: syscall MSRs
// cleared, fast strings on, MTRRs enabled with write-back default.
func BootMSRs() []kvm.MSR {
	return []kvm.MSR{
		{Index: msrIA32SysenterCS}, {Index: msrIA32SysenterESP}, {Index: msrIA32SysenterEIP},
		{Index: msrSTAR}, {Index: msrCSTAR}, {Index: msrKernelGSBase}, {Index: msrSyscallMask}, {Index: msrLSTAR},
		{Index: msrIA32TSC},
		{Index: msrIA32MiscEnable, Data: miscEnableFastString},
		{Index: msrMTRRdefType, Data: mtrrEnable | mtrrTypeWB},
	}
}

// Local APIC register offsets and delivery modes (arch/x86/include/asm/apicdef.h).
const (
	apicLVT0       = 0x350
	apicLVT1       = 0x360
	apicModeExtINT = 0x7
	apicModeNMI    = 0x4
)

// SetLINT programs the local APIC's LINT0 as ExtINT (the PIC) and LINT1 as
// NMI, as a PC BIOS leaves them.
func SetLINT(l *kvm.LAPICState) {
	le := binary.LittleEndian
	for _, r := range []struct {
		off  int
		mode uint32
	}{{apicLVT0, apicModeExtINT}, {apicLVT1, apicModeNMI}} {
		v := le.Uint32(l.Regs[r.off:])
		v = v&^0x700 | r.mode<<8
		le.PutUint32(l.Regs[r.off:], v)
	}
}

// CPUID bits (Intel SDM vol. 2A, CPUID; AMD APM vol. 3, appendix E).
const (
	cpuidHypervisorECX  = 1 << 31     // leaf 1 ECX: running under a hypervisor.
	cpuidTSCDeadlineECX = 1 << 24     // leaf 1 ECX: local APIC TSC-deadline timer mode.
	cpuidHTTEDX         = 1 << 28     // leaf 1 EDX: multi-threading / multi-core.
	cpuidVMXECX         = 1 << 5      // leaf 1 ECX: Intel VMX.
	cpuidSVMECX         = 1 << 2      // leaf 0x80000001 ECX: AMD SVM.
	cpuidSVMFeatures    = 0x8000_000a // AMD's SVM revision and features.
	cpuidTopoExtECX     = 1 << 22     // leaf 0x80000001 ECX: TopologyExtensions (leaf 0x8000001E).
	cpuidLevelSMT       = 1           // leaf 0xB/0x1F ECX[15:8] level type: SMT.
	cpuidLevelCore      = 2           // leaf 0xB/0x1F ECX[15:8] level type: core.
	cpuidFlagIndex      = 1           // KVM_CPUID_FLAG_SIGNIFCANT_INDEX: entry is per subleaf.
)

// NormalizeCPUID returns KVM's supported CPUID adjusted for vCPU cpu of
// count: its APIC ID (leaves 1, 0xB, 0x1F, 0x8000001E), a topology of one
// package of count cores with one thread each (leaves 1, 4, 0xB, 0x1F,
// 0x80000008, 0x8000001E), the hypervisor bit set, and no hardware
// virtualization (VMX, SVM and leaf 0x8000000A cleared).
//
// A Nitro Enclave's vCPUs have no VMX or SVM, and a guest that cannot
// turn them on cannot reach KVM's nested-virtualization code, which KVM
// offers whenever the host's kvm_intel or kvm_amd has nested=1: without
// the CPUID bits KVM refuses EFER.SVME (kvm_valid_efer) and treats
// CR4.VMXE as reserved (__cr4_reserved_bits), both in arch/x86/kvm.
//
// KVM reports leaves 0xB and 0x1F with subleaf 0 only and no topology in
// it, which Linux reads as one package per vCPU; they are replaced by an
// SMT level (subleaf 0), a core level (subleaf 1) and the invalid level
// that ends the list (subleaf 2).
func NormalizeCPUID(supported []kvm.CPUIDEntry, cpu, count int) []kvm.CPUIDEntry {
	out := make([]kvm.CPUIDEntry, 0, len(supported)+4)
	coreBits := uint32(0)
	for 1<<coreBits < count {
		coreBits++
	}
	topoExt := false
	for _, e := range supported {
		if e.Function == 0x8000_0001 && e.ECX&cpuidTopoExtECX != 0 {
			topoExt = true
		}
	}
	extTopoDone := map[uint32]bool{}
	for _, e := range supported {
		switch e.Function {
		case 1:
			e.EBX = uint32(cpu)<<24 | uint32(count)<<16 | 8<<8 | e.EBX&0xff // APIC ID, logical count, CLFLUSH 64 bytes.
			e.ECX = e.ECX&^cpuidVMXECX | cpuidHypervisorECX
			if count > 1 {
				e.EDX |= cpuidHTTEDX
			} else {
				e.EDX &^= cpuidHTTEDX
			}
		case 4:
			// Cores per package - 1 in EAX[31:26]; caches shared by one thread.
			e.EAX = e.EAX&0x3fff | uint32(min(count-1, 63))<<26
		case 0xb, 0x1f:
			if !extTopoDone[e.Function] {
				extTopoDone[e.Function] = true
				out = append(out, extTopology(e.Function, cpu, count, coreBits)...)
			}
			continue
		case 0x8000_0001:
			e.ECX &^= cpuidSVMECX
		case cpuidSVMFeatures:
			e.EAX, e.EBX, e.ECX, e.EDX = 0, 0, 0, 0
		case 0x8000_0008:
			// ApicIdSize in ECX[15:12], cores per package - 1 in ECX[7:0].
			e.ECX = e.ECX&^0xf0ff | coreBits<<12 | uint32(count-1)
		case 0x8000_001e:
			if topoExt {
				// Extended APIC ID; compute unit (core) ID with one thread
				// per unit; node 0 of one node per package.
				e.EAX, e.EBX, e.ECX = uint32(cpu), uint32(cpu)&0xff, 0
			}
		}
		out = append(out, e)
	}
	return out
}

// extTopology returns leaf fn (0xB or 0x1F) for vCPU cpu of count: one
// thread per core, count cores (coreBits of APIC ID) per package.
func extTopology(fn uint32, cpu, count int, coreBits uint32) []kvm.CPUIDEntry {
	id := uint32(cpu) // x2APIC ID in EDX of every subleaf.
	return []kvm.CPUIDEntry{
		{Function: fn, Index: 0, Flags: cpuidFlagIndex, EAX: 0, EBX: 1, ECX: cpuidLevelSMT << 8, EDX: id},
		{Function: fn, Index: 1, Flags: cpuidFlagIndex, EAX: coreBits, EBX: uint32(count), ECX: cpuidLevelCore<<8 | 1, EDX: id},
		{Function: fn, Index: 2, Flags: cpuidFlagIndex, ECX: 2, EDX: id},
	}
}

// WithTSCDeadline returns cpuid with the TSC-deadline timer bit of leaf 1
// set (ECX bit 24), for a KVM that has KVM_CAP_TSC_DEADLINE_TIMER.
func WithTSCDeadline(cpuid []kvm.CPUIDEntry) []kvm.CPUIDEntry {
	out := append([]kvm.CPUIDEntry(nil), cpuid...)
	for i := range out {
		if out[i].Function == 1 {
			out[i].ECX |= cpuidTSCDeadlineECX
		}
	}
	return out
}

// Extended CPUID leaves of the processor brand string (Intel SDM vol. 2A,
// CPUID, "Processor Brand String"): 16 bytes each, in EAX, EBX, ECX, EDX.
const (
	cpuidExtMax     = 0x8000_0000 // EAX: the highest extended leaf.
	cpuidBrandFirst = 0x8000_0002
	cpuidBrandLast  = 0x8000_0004
	brandBytes      = 48 // NUL-terminated, so at most 47 characters.
)

// WithBrandString returns cpuid with the processor brand string leaves
// (0x80000002-0x80000004) set to brand, truncated to 47 bytes: KVM's
// supported CPUID leaves them empty, so a guest's /proc/cpuinfo would
// show "model name: 06/06" where a Nitro Enclave shows its host's
// processor. The highest extended leaf is raised to 0x80000004 if lower.
// cpuid is returned unchanged when brand is empty or it has no extended
// leaves.
func WithBrandString(cpuid []kvm.CPUIDEntry, brand string) []kvm.CPUIDEntry {
	out := make([]kvm.CPUIDEntry, 0, len(cpuid)+3)
	ext := -1
	for _, e := range cpuid {
		if e.Function >= cpuidBrandFirst && e.Function <= cpuidBrandLast {
			continue
		}
		if e.Function == cpuidExtMax {
			ext = len(out)
		}
		out = append(out, e)
	}
	if brand == "" || ext < 0 {
		return cpuid
	}
	out[ext].EAX = max(out[ext].EAX, cpuidBrandLast)
	var b [brandBytes]byte
	copy(b[:brandBytes-1], brand)
	for fn := uint32(cpuidBrandFirst); fn <= cpuidBrandLast; fn++ {
		r := b[(fn-cpuidBrandFirst)*16:]
		out = append(out, kvm.CPUIDEntry{
			Function: fn,
			EAX:      binary.LittleEndian.Uint32(r[0:]),
			EBX:      binary.LittleEndian.Uint32(r[4:]),
			ECX:      binary.LittleEndian.Uint32(r[8:]),
			EDX:      binary.LittleEndian.Uint32(r[12:]),
		})
	}
	return out
}
