package x86

import (
	"fmt"

	"github.com/nitrovm/nitrovm/internal/kvm"
)

// Page-table entry bits of 4-level long-mode paging besides ptePresent,
// pteRW and ptePS (Intel SDM Vol. 3A, 4.5; AMD APM Vol. 2, 5.3).
const (
	pteUser = 1 << 2
	pteNX   = 1 << 63
	// pteAddr is bits 12-51 of an entry: the next table or a 4 KiB page.
	pteAddr = 0x000f_ffff_ffff_f000
)

// KernelImageStart and KernelImageEnd bound the window of an x86-64 Linux
// guest's kernel image mapping, __START_KERNEL_map up to the modules area
// (Documentation/arch/x86/x86_64/mm.rst): one PDPT entry, 1 GiB.
const (
	KernelImageStart = 0xffff_ffff_8000_0000
	KernelImageEnd   = 0xffff_ffff_c000_0000
)

// MapRun is a stretch of virtual addresses that the page tables map to
// contiguous physical addresses with the same page size and permissions.
type MapRun struct {
	VA, PA, Size uint64
	PageSize     uint64 // 4 KiB, 2 MiB or 1 GiB
	Write, User  bool
	Exec         bool // no NX bit on the way (or EFER.NXE off)
}

// Contains reports whether va is in r.
func (r MapRun) Contains(va uint64) bool { return va >= r.VA && va-r.VA < r.Size }

// String renders r as "va=0x...-0x... pa=0x... prot=r-x page=2M".
func (r MapRun) String() string {
	prot := []byte("r--")
	if r.Write {
		prot[1] = 'w'
	}
	if r.Exec {
		prot[2] = 'x'
	}
	if r.User {
		prot = append(prot, 'u')
	}
	page := map[uint64]string{1 << 12: "4K", 1 << 21: "2M", 1 << 30: "1G"}[r.PageSize]
	return fmt.Sprintf("va=%#x-%#x pa=%#x prot=%s page=%s", r.VA, r.VA+r.Size, r.PA, prot, page)
}

// LongMode4 tells whether s is 4-level long-mode paging (CR0.PG and
// EFER.LMA set, CR4.LA57 clear), the paging WalkLongMode walks, and
// whether EFER.NXE is set (its nx argument).
func LongMode4(s kvm.Sregs) (ok, nx bool) {
	return s.CR0&x86CR0PG != 0 && s.EFER&eferLMA != 0 && s.CR4&x86CR4LA57 == 0, s.EFER&eferNXE != 0
}

// maxWalkReads bounds the entries one walk reads: each 4 KiB page of a
// 1 GiB window (2^18 of them) is walked from the root, four entries.
const maxWalkReads = 4 << 18

// WalkLongMode returns the mappings that the 4-level page tables rooted at
// cr3 give the canonical virtual addresses [start, end), merged into runs,
// reading entries with read (guest-physical address to little-endian
// 8 bytes). nx tells whether EFER.NXE is set. The tables are guest memory,
// so anything may be in them: a table outside guest RAM (read fails) ends
// the walk with an error after the runs found so far; reserved bits are
// not checked. At most maxRuns runs are returned (truncated tells).
func WalkLongMode(read func(gpa uint64) (uint64, error), cr3 uint64, nx bool, start, end uint64, maxRuns int) (runs []MapRun, truncated bool, err error) {
	if start&0xfff != 0 || end&0xfff != 0 || end <= start || !canonical48(start) || !canonical48(end-1) || (start>>47) != ((end-1)>>47) {
		return nil, false, fmt.Errorf("page walk: window %#x-%#x is not page-aligned and canonical in one half", start, end)
	}
	reads := 0
	entry := func(table, va uint64, shift uint) (uint64, error) {
		reads++
		if reads > maxWalkReads {
			return 0, fmt.Errorf("page walk: more than %d entries read", maxWalkReads)
		}
		gpa := table&pteAddr + (va>>shift&0x1ff)*8
		e, err := read(gpa)
		if err != nil {
			return 0, fmt.Errorf("page walk: entry at %#x for va %#x: %w", gpa, va, err)
		}
		return e, nil
	}
	add := func(r MapRun) bool {
		if n := len(runs); n > 0 {
			p := &runs[n-1]
			if p.VA+p.Size == r.VA && p.PA+p.Size == r.PA && p.PageSize == r.PageSize &&
				p.Write == r.Write && p.User == r.User && p.Exec == r.Exec {
				p.Size += r.Size
				return true
			}
		}
		if len(runs) == maxRuns {
			truncated = true
			return false
		}
		runs = append(runs, r)
		return true
	}
	// va walks the window; each step skips what one entry covers.
	for va := start; va < end; {
		perm := MapRun{Write: true, User: true, Exec: true}
		table := cr3
		step := uint64(0)
		for _, shift := range []uint{39, 30, 21, 12} {
			size := uint64(1) << shift
			e, err := entry(table, va, shift)
			if err != nil {
				return runs, truncated, err
			}
			if e&ptePresent == 0 {
				step = size - va&(size-1)
				break
			}
			perm.Write = perm.Write && e&pteRW != 0
			perm.User = perm.User && e&pteUser != 0
			perm.Exec = perm.Exec && !(nx && e&pteNX != 0)
			if shift == 12 || (e&ptePS != 0 && (shift == 30 || shift == 21)) {
				// A leaf: its frame is bits shift..51 (bit 12 of a large
				// page is PAT, not address).
				frame := e & pteAddr &^ (size - 1)
				off := va & (size - 1)
				step = size - off
				perm.VA, perm.PA, perm.Size, perm.PageSize = va, frame+off, step, size
				if !add(perm) {
					return runs, truncated, nil
				}
				break
			}
			table = e
		}
		if va+step < va { // wrapped past the top of the address space
			break
		}
		va += step
	}
	// The last run may reach past end (a large page straddling it).
	if n := len(runs); n > 0 && runs[n-1].VA+runs[n-1].Size > end {
		runs[n-1].Size = end - runs[n-1].VA
	}
	return runs, truncated, nil
}

// canonical48 reports whether va is canonical with 48-bit virtual addresses.
func canonical48(va uint64) bool {
	top := va >> 47
	return top == 0 || top == 0x1ffff
}
