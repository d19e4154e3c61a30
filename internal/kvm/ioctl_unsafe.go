package kvm

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctlPtr issues ioctl req on fd with a pointer to *p as argument.
func ioctlPtr[T any](fd int, req uintptr, p *T) (uintptr, unix.Errno) {
	// SAFETY: every T passed here is one of this package's mirrors of a
	// kernel struct (fixed size, no Go pointers, asserted by types_test.go),
	// and req's encoded size matches it, so the kernel reads and writes only
	// inside *p, which stays live for the call.
	r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(p)))
	return r, e
}

// setUserMemoryRegion issues KVM_SET_USER_MEMORY_REGION mapping mem at gpa.
func setUserMemoryRegion(vmfd int, slot uint32, gpa uint64, mem []byte) unix.Errno {
	// SAFETY: only mem's address is passed; the caller keeps the mapping
	// alive (and unmoved: it is an mmap) for as long as the VM exists.
	r := userspaceMemoryRegion{slot: slot, guestPhysAddr: gpa, memorySize: uint64(len(mem)),
		userspaceAddr: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(mem))))}
	_, e := ioctlPtr(vmfd, _KVM_SET_USER_MEMORY_REGION, &r)
	return e
}
