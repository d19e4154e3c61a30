package x86

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/nitrovm/nitrovm/internal/kvm"
)

// fakeRAM is guest RAM for page walks: [0, len) readable.
type fakeRAM []byte

func (m fakeRAM) read(gpa uint64) (uint64, error) {
	if gpa > uint64(len(m))-8 {
		return 0, errors.New("outside guest RAM")
	}
	return binary.LittleEndian.Uint64(m[gpa:]), nil
}

func (m fakeRAM) put(gpa, v uint64) { binary.LittleEndian.PutUint64(m[gpa:], v) }

// kernelTables builds a Linux-like kernel image mapping in m: PML4 at
// 0x1000, PDPT at 0x2000, PD at 0x3000, a page table at 0x4000; text as
// three 2 MiB pages at 0xffffffff81000000 -> 0x1000000 (r-x), data as a
// 2 MiB page (rw-, NX) and 4 KiB pages (rw-, NX) after a hole.
func kernelTables(m fakeRAM) {
	const p, w, ps = ptePresent, pteRW, ptePS
	m.put(0x1000+511*8, 0x2000|p|w)
	m.put(0x2000+510*8, 0x3000|p|w)
	for i := uint64(0); i < 3; i++ {
		m.put(0x3000+(8+i)*8, (0x1000000+i<<21)|p|ps|1<<12) // bit 12: PAT, not address
	}
	m.put(0x3000+12*8, 0x1800000|p|w|ps|pteNX)
	m.put(0x3000+14*8, 0x4000|p|w)
	m.put(0x4000+0*8, 0x1c00000|p|w|pteNX)
	m.put(0x4000+1*8, 0x1c01000|p|w|pteNX)
	m.put(0x4000+3*8, 0x1a00000|p|w|pteNX)
}

func TestWalkLongMode(t *testing.T) {
	m := make(fakeRAM, 0x5000)
	kernelTables(m)
	runs, trunc, err := WalkLongMode(m.read, 0x1000, true, KernelImageStart, KernelImageEnd, 16)
	if err != nil || trunc {
		t.Fatalf("walk: %v (truncated %v)", err, trunc)
	}
	var got []string
	for _, r := range runs {
		got = append(got, r.String())
	}
	want := []string{
		"va=0xffffffff81000000-0xffffffff81600000 pa=0x1000000 prot=r-x page=2M",
		"va=0xffffffff81800000-0xffffffff81a00000 pa=0x1800000 prot=rw- page=2M",
		"va=0xffffffff81c00000-0xffffffff81c02000 pa=0x1c00000 prot=rw- page=4K",
		"va=0xffffffff81c03000-0xffffffff81c04000 pa=0x1a00000 prot=rw- page=4K",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("runs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !runs[0].Contains(0xffffffff811d5600) || runs[0].Contains(0xffffffff81600000) {
		t.Errorf("Contains: wrong bounds for %v", runs[0])
	}
	// Without EFER.NXE the NX bit means nothing.
	runs, _, _ = WalkLongMode(m.read, 0x1000, false, KernelImageStart, KernelImageEnd, 16)
	if !runs[1].Exec {
		t.Errorf("nx off: %v not executable", runs[1])
	}
}

// TestWalkLongModeErrors: hostile or broken tables end the walk with what
// was found so far.
func TestWalkLongModeErrors(t *testing.T) {
	m := make(fakeRAM, 0x5000)
	kernelTables(m)
	tests := []struct {
		name       string
		cr3        uint64
		start, end uint64
		maxRuns    int
		edit       func(fakeRAM)
		runs       int
		trunc      bool
		err        string
	}{
		{name: "unaligned window", cr3: 0x1000, start: KernelImageStart + 1, end: KernelImageEnd, err: "not page-aligned"},
		{name: "empty window", cr3: 0x1000, start: KernelImageEnd, end: KernelImageStart, err: "not page-aligned"},
		{name: "non-canonical", cr3: 0x1000, start: 0x0000_8000_0000_0000, end: 0x0000_8000_0000_1000, err: "canonical"},
		{name: "across the halves", cr3: 0x1000, start: 0, end: KernelImageEnd, err: "canonical"},
		{name: "root outside RAM", cr3: 0x7fff_f000, start: KernelImageStart, end: KernelImageEnd, err: "outside guest RAM"},
		{name: "table outside RAM", cr3: 0x1000, start: KernelImageStart, end: KernelImageEnd, runs: 2,
			edit: func(m fakeRAM) { m.put(0x3000+14*8, 0x9000_0000|ptePresent) }, err: "entry at 0x90000000"},
		{name: "nothing present", cr3: 0x4000, start: KernelImageStart, end: KernelImageEnd},
		{name: "truncated", cr3: 0x1000, start: KernelImageStart, end: KernelImageEnd, maxRuns: 2, runs: 2, trunc: true},
		{name: "self-referencing tables", cr3: 0x1000, start: KernelImageStart, end: KernelImageEnd, maxRuns: 1 << 20,
			edit: func(m fakeRAM) {
				// Every entry of the PD and PT points at the PT: 512 x 512
				// 4 KiB pages, the most a 1 GiB window can read.
				for i := uint64(0); i < 512; i++ {
					m.put(0x3000+i*8, 0x3000|ptePresent)
				}
			}, runs: 1 << 18},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mm := append(fakeRAM(nil), m...)
			if tt.edit != nil {
				tt.edit(mm)
			}
			if tt.maxRuns == 0 {
				tt.maxRuns = 16
			}
			runs, trunc, err := WalkLongMode(mm.read, tt.cr3, true, tt.start, tt.end, tt.maxRuns)
			if (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("err %v, want %q", err, tt.err)
			}
			if len(runs) != tt.runs || trunc != tt.trunc {
				t.Errorf("%d runs (truncated %v), want %d (%v)", len(runs), trunc, tt.runs, tt.trunc)
			}
		})
	}
}

// FuzzWalkLongMode: any page tables in guest RAM give runs inside the
// window, in order, without overlap, or an error; never a panic.
func FuzzWalkLongMode(f *testing.F) {
	m := make(fakeRAM, 0x5000)
	kernelTables(m)
	f.Add([]byte(m), uint64(0x1000), true)
	f.Add(make([]byte, 0x2000), uint64(0), false)
	f.Fuzz(func(t *testing.T, ram []byte, cr3 uint64, nx bool) {
		if len(ram) < 8 {
			return
		}
		runs, _, _ := WalkLongMode(fakeRAM(ram).read, cr3, nx, KernelImageStart, KernelImageEnd, 64)
		prev := uint64(KernelImageStart)
		for _, r := range runs {
			if r.Size == 0 || r.VA < prev || r.VA+r.Size > KernelImageEnd || r.VA+r.Size < r.VA {
				t.Fatalf("run %v outside the window or out of order (after %#x)", r, prev)
			}
			prev = r.VA + r.Size
		}
	})
}

// TestLongMode4: only 4-level long-mode paging is walked; NXE is reported
// apart.
func TestLongMode4(t *testing.T) {
	long := kvm.Sregs{CR0: x86CR0PG | x86CR0PE, CR4: x86CR4PAE, EFER: eferLME | eferLMA}
	nxe := long
	nxe.EFER |= eferNXE
	la57 := long
	la57.CR4 |= x86CR4LA57
	noPG := long
	noPG.CR0 = x86CR0PE
	noLMA := long
	noLMA.EFER = eferLME
	tests := []struct {
		name   string
		s      kvm.Sregs
		ok, nx bool
	}{
		{"long mode", long, true, false},
		{"long mode, NXE", nxe, true, true},
		{"5-level paging", la57, false, false},
		{"paging off (reset)", noPG, false, false},
		{"LME without LMA", noLMA, false, false},
	}
	for _, tt := range tests {
		if ok, nx := LongMode4(tt.s); ok != tt.ok || nx != tt.nx {
			t.Errorf("%s: got %v, %v; want %v, %v", tt.name, ok, nx, tt.ok, tt.nx)
		}
	}
}
