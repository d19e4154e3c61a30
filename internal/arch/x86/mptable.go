package x86

import (
	"encoding/binary"
	"fmt"
)

// MP table constants (Intel MultiProcessor Specification 1.4, chapter 4;
// Linux arch/x86/include/asm/mpspec_def.h).
const (
	mpfBytes        = 16   // struct mpf_intel
	mpcHeaderBytes  = 44   // struct mpc_table
	mpcCPUBytes     = 20   // struct mpc_cpu
	mpcEntryBytes   = 8    // mpc_bus, mpc_ioapic, mpc_intsrc, mpc_lintsrc
	mpSpecRev       = 4    // MPS 1.4
	mpProcessor     = 0    // MP_PROCESSOR
	mpBus           = 1    // MP_BUS
	mpIOAPIC        = 2    // MP_IOAPIC
	mpIntSrc        = 3    // MP_INTSRC
	mpLIntSrc       = 4    // MP_LINTSRC
	cpuEnabled      = 1    // CPU_ENABLED
	cpuBootProc     = 2    // CPU_BOOTPROCESSOR
	apicVersion     = 0x14 // integrated local APIC, as KVM's reports.
	ioapicVersion   = 0x11 // 82093AA-compatible IOAPIC, as KVM's reports.
	mpIRQTypeINT    = 0    // mp_INT
	mpIRQTypeNMI    = 1    // mp_NMI
	mpIRQTypeExtINT = 3    // mp_ExtINT
	cpuFeatureFPU   = 1 << 0
	cpuFeatureAPIC  = 1 << 9
	cpuSignature    = 0x600 // family 6
)

// IOAPICID is the IOAPIC's ID in the MP table and the MADT.
const IOAPICID = 0

// checksum returns the byte that makes b's bytes sum to zero.
func checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}

// MPTable returns the MP floating pointer followed by an MP configuration
// table, to be placed at MPTableAddr: cpus processors (APIC IDs 0..cpus-1,
// 0 the bootstrap processor), an ISA bus, the IOAPIC with ISA IRQ i wired to
// pin i for every pin, LINT0 ExtINT to the bootstrap processor only (the
// PIC's output reaches one CPU, as on a PC and in Firecracker) and LINT1 NMI
// to every CPU.
//
// The IOAPIC's ID is IOAPICID, the reset value of KVM's in-kernel IOAPIC ID
// register (virt/kvm/ioapic.c), so the tables agree with the device; QEMU's
// microvm announces 0 too.
func MPTable(cpus int) ([]byte, error) {
	if cpus < 1 || cpus > MaxCPUs {
		return nil, fmt.Errorf("x86: %d CPUs, want 1..%d", cpus, MaxCPUs)
	}
	size := mpfBytes + mpcHeaderBytes + cpus*mpcCPUBytes + (1+1+IOAPICPins+2)*mpcEntryBytes
	if size > MPTableMaxBytes {
		return nil, fmt.Errorf("x86: MP table of %d bytes exceeds %d", size, MPTableMaxBytes)
	}
	b := make([]byte, size)
	le := binary.LittleEndian

	// Floating pointer: "_MP_", physptr to the table right after it.
	copy(b, "_MP_")
	le.PutUint32(b[4:], MPTableAddr+mpfBytes)
	b[8] = 1 // length in 16-byte units
	b[9] = mpSpecRev
	b[10] = checksum(b[:mpfBytes])

	t := b[mpfBytes:]
	copy(t, "PCMP")
	le.PutUint16(t[4:], uint16(len(t)))
	t[6] = mpSpecRev
	copy(t[8:16], "NITROVM ")
	copy(t[16:28], "000000000000")
	le.PutUint32(t[36:], LAPICAddr)
	o := mpcHeaderBytes
	for i := range cpus {
		e := t[o : o+mpcCPUBytes]
		e[0] = mpProcessor
		e[1] = byte(i)
		e[2] = apicVersion
		e[3] = cpuEnabled
		if i == 0 {
			e[3] |= cpuBootProc
		}
		le.PutUint32(e[4:], cpuSignature)
		le.PutUint32(e[8:], cpuFeatureFPU|cpuFeatureAPIC)
		o += mpcCPUBytes
	}
	bus := t[o : o+8]
	bus[0] = mpBus
	copy(bus[2:8], "ISA   ")
	o += 8
	ioapicID := byte(IOAPICID)
	io := t[o : o+8]
	io[0], io[1], io[2], io[3] = mpIOAPIC, ioapicID, ioapicVersion, 1
	le.PutUint32(io[4:], IOAPICAddr)
	o += 8
	for pin := range IOAPICPins {
		e := t[o : o+8]
		e[0], e[1] = mpIntSrc, mpIRQTypeINT // irqflag 0: conforms to the bus.
		e[4], e[5], e[6], e[7] = 0, byte(pin), ioapicID, byte(pin)
		o += 8
	}
	for lint, l := range []struct{ typ, dest byte }{
		{mpIRQTypeExtINT, 0}, // the bootstrap processor's LINT0.
		{mpIRQTypeNMI, 0xff}, // every local APIC's LINT1.
	} {
		e := t[o : o+8]
		e[0], e[1] = mpLIntSrc, l.typ
		e[4], e[5], e[6], e[7] = 0, 0, l.dest, byte(lint)
		o += 8
	}
	le.PutUint16(t[34:], uint16(cpus+1+1+IOAPICPins+2)) // entry count
	t[7] = checksum(t)
	return b, nil
}
