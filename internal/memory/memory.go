// Package memory models guest-physical memory: a set of non-overlapping
// regions backed by host memory, with bounds-checked access.
//
// # Security
//
// Every address handled here may come from an untrusted guest. No method
// returns or touches host memory outside the regions it was given: each
// access is checked for overflow and containment first.
package memory

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"golang.org/x/sys/unix"
)

// ErrOutOfRange is returned for an access that is not wholly inside one
// guest RAM region.
var ErrOutOfRange = errors.New("memory: guest address range outside guest RAM")

// Region is a contiguous range of guest-physical memory backed by Data.
type Region struct {
	GPA  uint64 // guest-physical address of Data[0].
	Data []byte // host memory backing the region.
}

// End returns the first guest-physical address past the region.
func (r Region) End() uint64 { return r.GPA + uint64(len(r.Data)) }

// Guest is guest-physical memory. It is safe for concurrent use: its layout
// never changes after New, and it holds no locks (the guest writes the same
// bytes concurrently anyway).
type Guest struct {
	regions []Region // sorted by GPA, non-overlapping.
	mapped  bool     // regions were mmapped by Map and are unmapped by Close.
}

// New returns guest memory made of regions, which must not overlap nor wrap
// the address space.
func New(regions ...Region) (*Guest, error) {
	rs := append([]Region(nil), regions...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].GPA < rs[j].GPA })
	for i, r := range rs {
		if r.GPA+uint64(len(r.Data)) < r.GPA {
			return nil, fmt.Errorf("memory: region at %#x wraps the address space", r.GPA)
		}
		if i > 0 && rs[i-1].End() > r.GPA {
			return nil, fmt.Errorf("memory: regions at %#x and %#x overlap", rs[i-1].GPA, r.GPA)
		}
	}
	return &Guest{regions: rs}, nil
}

// Range is a guest-physical address range.
type Range struct {
	GPA  uint64 // first address.
	Size uint64 // length in bytes.
}

// Map returns guest memory with one region per range, each backed by fresh
// anonymous private host memory (zeroed, not locked), huge-page aligned to
// its guest address and offered transparent huge pages where it is large
// enough (mapRAM). Close unmaps it.
func Map(layout []Range) (*Guest, error) {
	rs := make([]Region, 0, len(layout))
	unmapAll := func() {
		for _, r := range rs {
			_ = unmapRAM(r.Data)
		}
	}
	for _, l := range layout {
		size := int(l.Size)
		if size == 0 {
			continue
		}
		if uint64(size) != l.Size || size < 0 {
			unmapAll()
			return nil, fmt.Errorf("memory: region size %#x too large", l.Size)
		}
		b, err := mapRAM(l.GPA, size)
		if err != nil {
			unmapAll()
			return nil, fmt.Errorf("memory: mmap %d bytes for guest RAM at %#x: %w", size, l.GPA, err)
		}
		// Guest RAM holds the enclave's secrets: never in a core dump.
		if err := unix.Madvise(b, unix.MADV_DONTDUMP); err != nil {
			_ = unmapRAM(b)
			unmapAll()
			return nil, fmt.Errorf("memory: madvise(MADV_DONTDUMP) guest RAM at %#x: %w", l.GPA, err)
		}
		rs = append(rs, Region{GPA: l.GPA, Data: b})
	}
	g, err := New(rs...)
	if err != nil {
		unmapAll()
		return nil, err
	}
	g.mapped = true
	return g, nil
}

// Close releases memory obtained from Map. It is a no-op for memory made by New.
func (g *Guest) Close() error {
	if !g.mapped {
		return nil
	}
	var first error
	for _, r := range g.regions {
		if err := unmapRAM(r.Data); err != nil && first == nil {
			first = err
		}
	}
	g.regions = nil
	g.mapped = false
	return first
}

// Regions returns the guest's regions, sorted by address. The slices alias
// guest memory.
func (g *Guest) Regions() []Region { return append([]Region(nil), g.regions...) }

// Size returns the total number of bytes of guest RAM.
func (g *Guest) Size() uint64 {
	var n uint64
	for _, r := range g.regions {
		n += uint64(len(r.Data))
	}
	return n
}

// Slice returns the n bytes of guest memory at gpa, aliasing guest RAM.
// The range must lie wholly inside one region; n may be 0.
func (g *Guest) Slice(gpa, n uint64) ([]byte, error) {
	end := gpa + n
	if end < gpa {
		return nil, fmt.Errorf("%w: %#x+%#x overflows", ErrOutOfRange, gpa, n)
	}
	for _, r := range g.regions {
		if gpa >= r.GPA && end <= r.End() {
			off := gpa - r.GPA
			return r.Data[off : off+n : off+n], nil
		}
	}
	return nil, fmt.Errorf("%w: [%#x, %#x)", ErrOutOfRange, gpa, end)
}

// Read copies len(p) bytes of guest memory at gpa into p.
func (g *Guest) Read(gpa uint64, p []byte) error {
	s, err := g.Slice(gpa, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(p, s)
	return nil
}

// Write copies p into guest memory at gpa.
func (g *Guest) Write(gpa uint64, p []byte) error {
	s, err := g.Slice(gpa, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(s, p)
	return nil
}

// Uint16 reads a little-endian uint16 at gpa.
func (g *Guest) Uint16(gpa uint64) (uint16, error) {
	s, err := g.Slice(gpa, 2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(s), nil
}

// Uint32 reads a little-endian uint32 at gpa.
func (g *Guest) Uint32(gpa uint64) (uint32, error) {
	s, err := g.Slice(gpa, 4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(s), nil
}

// Uint64 reads a little-endian uint64 at gpa.
func (g *Guest) Uint64(gpa uint64) (uint64, error) {
	s, err := g.Slice(gpa, 8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(s), nil
}

// PutUint16 writes v little-endian at gpa.
func (g *Guest) PutUint16(gpa uint64, v uint16) error {
	s, err := g.Slice(gpa, 2)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint16(s, v)
	return nil
}

// PutUint32 writes v little-endian at gpa.
func (g *Guest) PutUint32(gpa uint64, v uint32) error {
	s, err := g.Slice(gpa, 4)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(s, v)
	return nil
}

// PutUint64 writes v little-endian at gpa.
func (g *Guest) PutUint64(gpa uint64, v uint64) error {
	s, err := g.Slice(gpa, 8)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint64(s, v)
	return nil
}
