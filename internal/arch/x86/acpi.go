package x86

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// MMIODevice is a virtio-mmio slot as announced to the guest.
type MMIODevice struct {
	Addr  uint64 // MMIO base.
	Bytes uint64 // MMIO window size.
	IRQ   uint32 // interrupt line (GSI).
}

// ACPI constants (ACPI 6.4 specification, sections 5.2 and 6.4).
const (
	rsdpBytes       = 36 // RSDP, revision 2
	sdtHeaderBytes  = 36 // System Description Table header
	fadtBytes       = 276
	fadtRevision    = 6
	fadtMinor       = 4
	fadtFlagsOff    = 112     // u32 Flags
	fadtHWReduced   = 1 << 20 // HW_REDUCED_ACPI
	fadtBootArchOff = 109     // u16 IA-PC Boot Architecture Flags
	bootArch8042    = 1 << 1  // 8042 present (ACPI 6.4 table 5.11)
	bootArchNoVGA   = 1 << 2  // VGA not present
	bootArchNoMSI   = 1 << 3  // MSI not supported
	bootArchNoRTC   = 1 << 5  // CMOS RTC not present
	fadtXDSDTOff    = 140     // u64 X_DSDT
	fadtDSDTOff     = 40      // u32 DSDT
	fadtHypervisor  = 268     // u64 Hypervisor Vendor Identity
	madtPCATCompat  = 1       // PCAT_COMPAT: dual 8259s present
	madtLAPIC       = 0       // Processor Local APIC structure
	madtIOAPIC      = 1       // I/O APIC structure
	madtLAPICBytes  = 8
	madtIOAPICBytes = 12
	madtLAPICOn     = 1 // Enabled
	oemID           = "NITRVM"
	oemTableID      = "NITROVM "
	creatorID       = "NVMM"
)

// ACPITables returns the RSDP and the tables it leads to (XSDT, FADT
// hardware-reduced, MADT, DSDT), to be placed at ACPIAddr. The MADT lists cpus
// local APICs and the IOAPIC; the DSDT has one LNRO0005 (virtio-mmio) device
// per entry of devs with its MMIO window and interrupt.
func ACPITables(cpus int, devs []MMIODevice) ([]byte, error) {
	if cpus < 1 || cpus > MaxCPUs {
		return nil, fmt.Errorf("x86: %d CPUs, want 1..%d", cpus, MaxCPUs)
	}
	dsdt, err := dsdt(devs)
	if err != nil {
		return nil, err
	}
	madt := madt(cpus)
	// Layout: RSDP, XSDT (2 entries), FADT, MADT, DSDT, each 16-byte aligned.
	align := func(n int) int { return (n + 15) &^ 15 }
	xsdtOff := align(rsdpBytes)
	fadtOff := align(xsdtOff + sdtHeaderBytes + 2*8)
	madtOff := align(fadtOff + fadtBytes)
	dsdtOff := align(madtOff + len(madt))
	total := dsdtOff + len(dsdt)
	if total > ACPIMaxBytes {
		return nil, fmt.Errorf("x86: ACPI tables of %d bytes exceed %d", total, ACPIMaxBytes)
	}
	addr := func(off int) uint64 { return ACPIAddr + uint64(off) }
	le := binary.LittleEndian
	b := make([]byte, total)

	fadt := make([]byte, fadtBytes)
	sdtHeader(fadt, "FACP", fadtRevision)
	le.PutUint32(fadt[fadtDSDTOff:], uint32(addr(dsdtOff)))
	le.PutUint16(fadt[fadtBootArchOff:], bootArch8042|bootArchNoVGA|bootArchNoMSI|bootArchNoRTC)
	le.PutUint32(fadt[fadtFlagsOff:], fadtHWReduced)
	fadt[131] = fadtMinor
	le.PutUint64(fadt[fadtXDSDTOff:], addr(dsdtOff))
	copy(fadt[fadtHypervisor:], "NITROVM\x00")
	sdtChecksum(fadt)

	xsdt := make([]byte, sdtHeaderBytes+2*8)
	sdtHeader(xsdt, "XSDT", 1)
	le.PutUint64(xsdt[sdtHeaderBytes:], addr(fadtOff))
	le.PutUint64(xsdt[sdtHeaderBytes+8:], addr(madtOff))
	sdtChecksum(xsdt)

	rsdp := b[:rsdpBytes]
	copy(rsdp, "RSD PTR ")
	copy(rsdp[9:15], oemID)
	rsdp[15] = 2 // revision: ACPI 2.0+
	le.PutUint32(rsdp[20:], rsdpBytes)
	le.PutUint64(rsdp[24:], addr(xsdtOff))
	rsdp[8] = checksum(rsdp[:20])
	rsdp[32] = checksum(rsdp)

	copy(b[xsdtOff:], xsdt)
	copy(b[fadtOff:], fadt)
	copy(b[madtOff:], madt)
	copy(b[dsdtOff:], dsdt)
	return b, nil
}

// sdtHeader fills the System Description Table header of t (length = len(t)).
func sdtHeader(t []byte, sig string, rev byte) {
	le := binary.LittleEndian
	copy(t[0:4], sig)
	le.PutUint32(t[4:], uint32(len(t)))
	t[8] = rev
	copy(t[10:16], oemID)
	copy(t[16:24], oemTableID)
	le.PutUint32(t[24:], 1)
	copy(t[28:32], creatorID)
	le.PutUint32(t[32:], 1)
}

// sdtChecksum sets the checksum byte of table t.
func sdtChecksum(t []byte) {
	t[9] = 0
	t[9] = checksum(t)
}

// madt returns the MADT: local APIC address, PCAT_COMPAT, one enabled
// Processor Local APIC per CPU and the IOAPIC at GSI base 0.
func madt(cpus int) []byte {
	le := binary.LittleEndian
	t := make([]byte, sdtHeaderBytes+8+cpus*madtLAPICBytes+madtIOAPICBytes)
	sdtHeader(t, "APIC", 5)
	le.PutUint32(t[36:], LAPICAddr)
	le.PutUint32(t[40:], madtPCATCompat)
	o := sdtHeaderBytes + 8
	for i := range cpus {
		e := t[o : o+madtLAPICBytes]
		e[0], e[1], e[2], e[3] = madtLAPIC, madtLAPICBytes, byte(i), byte(i) // type, length, UID, APIC ID
		le.PutUint32(e[4:], madtLAPICOn)
		o += madtLAPICBytes
	}
	e := t[o : o+madtIOAPICBytes]
	e[0], e[1], e[2] = madtIOAPIC, madtIOAPICBytes, IOAPICID
	le.PutUint32(e[4:], IOAPICAddr)
	le.PutUint32(e[8:], 0) // GSI base
	sdtChecksum(t)
	return t
}

// VirtioCmdline returns the kernel command-line entries announcing devs to
// Linux's virtio_mmio driver ("virtio_mmio.device=<size>@<base>:<irq>").
func VirtioCmdline(devs []MMIODevice) string {
	var b strings.Builder
	for i, d := range devs {
		if i > 0 {
			b.WriteByte(' ')
		}
		size := fmt.Sprintf("%d", d.Bytes)
		if d.Bytes%1024 == 0 {
			size = fmt.Sprintf("%dK", d.Bytes/1024)
		}
		fmt.Fprintf(&b, "virtio_mmio.device=%s@%#x:%d", size, d.Addr, d.IRQ)
	}
	return b.String()
}
