package memory

import (
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePageSize is the size of an x86-64 huge page (one page-directory entry).
//
// KVM maps guest RAM into the guest with pages of this size only where the
// host backs it with a huge page and the guest-physical and host-virtual
// addresses agree modulo it: a memory slot whose base and userspace address
// differ in those bits gets no large pages at all (Linux,
// arch/x86/kvm/x86.c, kvm_alloc_memslot_metadata). AWS backs an enclave's
// memory with huge pages, allocated by nitro-cli's allocator.
const hugePageSize = 2 << 20

// mapRAM maps size bytes of fresh anonymous private memory for guest RAM at
// gpa. A mapping of at least hugePageSize is placed at a host address
// congruent to gpa modulo hugePageSize and marked MADV_HUGEPAGE, so that the
// host can back it with transparent huge pages (also where they are enabled
// only on request, "madvise", as on Ubuntu) and KVM can map it with them.
func mapRAM(gpa uint64, size int) ([]byte, error) {
	const prot = unix.PROT_READ | unix.PROT_WRITE
	const flags = unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_NORESERVE
	if size < hugePageSize {
		p, err := unix.MmapPtr(-1, 0, nil, uintptr(size), prot, flags)
		if err != nil {
			return nil, err
		}
		// SAFETY: p is a fresh mapping of size bytes, unmapped only by unmapRAM.
		return unsafe.Slice((*byte)(p), size), nil
	}
	// Map one huge page more than needed, keep the part that starts at the
	// wanted offset, and unmap the rest.
	total := uintptr(size) + hugePageSize
	p, err := unix.MmapPtr(-1, 0, nil, total, prot, flags)
	if err != nil {
		return nil, err
	}
	want := uintptr(gpa % hugePageSize)
	head := (want + hugePageSize - uintptr(p)%hugePageSize) % hugePageSize
	start := unsafe.Add(p, head)
	tail := total - head - uintptr(size)
	if head > 0 {
		if err := unix.MunmapPtr(p, head); err != nil {
			_ = unix.MunmapPtr(p, total)
			return nil, err
		}
	}
	if tail > 0 {
		if err := unix.MunmapPtr(unsafe.Add(start, size), tail); err != nil {
			_ = unix.MunmapPtr(start, uintptr(size)+tail)
			return nil, err
		}
	}
	// SAFETY: start is the kept part of the fresh mapping, size bytes long,
	// unmapped only by unmapRAM.
	b := unsafe.Slice((*byte)(start), size)
	// EINVAL: a kernel without transparent huge pages; the memory works
	// without them.
	if err := unix.Madvise(b, unix.MADV_HUGEPAGE); err != nil && !errors.Is(err, unix.EINVAL) {
		_ = unmapRAM(b)
		return nil, err
	}
	return b, nil
}

// unmapRAM unmaps memory returned by mapRAM.
func unmapRAM(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(b)), uintptr(len(b)))
}
