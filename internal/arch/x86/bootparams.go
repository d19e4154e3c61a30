package x86

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/nitrovm/nitrovm/internal/memory"
)

// boot_params offsets outside the setup header
// (arch/x86/include/uapi/asm/bootparam.h).
const (
	bpACPIRSDPAddr = 0x070 // u64 acpi_rsdp_addr
	bpE820Entries  = 0x1e8 // u8 e820_entries
	bpE820Table    = 0x2d0 // struct boot_e820_entry e820_table[128]
	e820MaxEntries = 128   // E820_MAX_ENTRIES_ZEROPAGE
	e820EntryBytes = 20    // sizeof(struct boot_e820_entry), packed
	zeroPageBytes  = 0x1000
)

// e820 entry types (arch/x86/include/uapi/asm/e820.h).
const (
	E820RAM      = 1 // E820_TYPE_RAM
	E820Reserved = 2 // E820_TYPE_RESERVED
)

// E820Entry is one entry of the BIOS e820 memory map.
type E820Entry struct {
	Addr uint64 // first byte.
	Size uint64 // length in bytes.
	Type uint32 // E820RAM or E820Reserved.
}

// RAMLayout splits ramBytes of guest RAM around the MMIO gap: one range from
// 0, and one from 4 GiB for whatever does not fit below MMIOGapAddr.
func RAMLayout(ramBytes uint64) []memory.Range {
	if ramBytes <= MMIOGapAddr {
		return []memory.Range{{GPA: 0, Size: ramBytes}}
	}
	return []memory.Range{{GPA: 0, Size: MMIOGapAddr}, {GPA: MMIOGapEndAddr, Size: ramBytes - MMIOGapAddr}}
}

// E820Map returns the memory map for ramBytes of guest RAM laid out by
// RAMLayout: low RAM up to the EBDA, the EBDA and BIOS area reserved (they
// hold the MP and ACPI tables), RAM from 1 MiB up to the MMIO gap, and RAM
// above 4 GiB.
func E820Map(ramBytes uint64) []E820Entry {
	m := []E820Entry{
		{0, EBDAAddr, E820RAM},
		{EBDAAddr, 0xa0000 - EBDAAddr, E820Reserved},
		{ACPIAddr, HighMemAddr - ACPIAddr, E820Reserved},
	}
	low := min(ramBytes, MMIOGapAddr)
	if low > HighMemAddr {
		m = append(m, E820Entry{HighMemAddr, low - HighMemAddr, E820RAM})
	}
	if ramBytes > MMIOGapAddr {
		m = append(m, E820Entry{MMIOGapEndAddr, ramBytes - MMIOGapAddr, E820RAM})
	}
	return m
}

// BootConfig is what the zero page tells the kernel.
type BootConfig struct {
	Cmdline    string      // kernel command line, without NUL.
	InitrdAddr uint64      // guest address of the initrd; 0 if none.
	InitrdSize uint64      // initrd length in bytes.
	E820       []E820Entry // memory map.
	RSDPAddr   uint64      // ACPI RSDP address; 0 if none.
}

// ZeroPage returns the 4 KiB struct boot_params for kernel k booted with c.
func ZeroPage(k *BzImage, c BootConfig) ([]byte, error) {
	if len(c.E820) > e820MaxEntries {
		return nil, fmt.Errorf("x86: %d e820 entries, at most %d", len(c.E820), e820MaxEntries)
	}
	if c.InitrdAddr+c.InitrdSize > 1<<32 {
		return nil, fmt.Errorf("x86: initrd [%#x+%#x] above 4 GiB", c.InitrdAddr, c.InitrdSize)
	}
	p := make([]byte, zeroPageBytes)
	copy(p[hdrSetupSects:], k.Header)
	le := binary.LittleEndian
	p[hdrTypeOfLoader] = loaderUndef
	p[hdrLoadFlags] |= loadedHigh | canUseHeap
	le.PutUint16(p[hdrHeapEndPtr:], heapEndPtrAddr)
	le.PutUint32(p[hdrCmdLinePtr:], CmdlineAddr)
	le.PutUint32(p[hdrRamdiskImage:], uint32(c.InitrdAddr))
	le.PutUint32(p[hdrRamdiskSize:], uint32(c.InitrdSize))
	le.PutUint64(p[bpACPIRSDPAddr:], c.RSDPAddr)
	p[bpE820Entries] = byte(len(c.E820))
	for i, e := range c.E820 {
		o := bpE820Table + i*e820EntryBytes
		le.PutUint64(p[o:], e.Addr)
		le.PutUint64(p[o+8:], e.Size)
		le.PutUint32(p[o+16:], e.Type)
	}
	return p, nil
}

// WriteCmdline writes cmdline, NUL-terminated, at CmdlineAddr after checking
// it against the kernel's and the layout's limits.
func WriteCmdline(mem *memory.Guest, k *BzImage, cmdline string) error {
	if strings.IndexByte(cmdline, 0) >= 0 {
		return fmt.Errorf("x86: kernel command line contains a NUL byte")
	}
	limit := uint64(CmdlineMaxBytes - 1)
	if k.CmdlineSize > 0 {
		limit = min(limit, uint64(k.CmdlineSize))
	}
	if uint64(len(cmdline)) > limit {
		return fmt.Errorf("x86: kernel command line of %d bytes exceeds the limit of %d", len(cmdline), limit)
	}
	if err := mem.Write(CmdlineAddr, append([]byte(cmdline), 0)); err != nil {
		return fmt.Errorf("x86: write command line: %w", err)
	}
	return nil
}

// InitrdAddr returns where to place an initrd of size bytes: as high as
// possible, page-aligned, ending at or below both the end of low RAM and the
// kernel's initrd_addr_max, and above the booting kernel.
func InitrdAddr(k *BzImage, ramBytes, size uint64) (uint64, error) {
	top := min(ramBytes, MMIOGapAddr)
	if k.InitrdAddrMax != 0 {
		top = min(top, uint64(k.InitrdAddrMax)+1)
	}
	const pageBytes = 0x1000
	if size > top {
		return 0, fmt.Errorf("x86: initrd of %d bytes does not fit below %#x; add guest memory", size, top)
	}
	addr := (top - size) &^ (pageBytes - 1)
	if addr < k.KernelEnd() {
		return 0, fmt.Errorf("x86: initrd of %d bytes would overlap the kernel (ends %#x) below %#x; add guest memory", size, k.KernelEnd(), top)
	}
	return addr, nil
}
