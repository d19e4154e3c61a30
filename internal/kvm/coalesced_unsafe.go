package kvm

import (
	"sync/atomic"
	"unsafe"
)

// loadUint32 atomically loads the uint32 at b[off:].
func loadUint32(b []byte, off int) uint32 {
	_ = b[off+3]
	// SAFETY: b[off:off+4] is in bounds (checked above) and off is a
	// multiple of 4 in a page-aligned mapping (or an 8-aligned test slice),
	// so the pointer is valid and aligned for an atomic access; the memory
	// is shared with the kernel, which is why the access must be atomic.
	return atomic.LoadUint32((*uint32)(unsafe.Pointer(&b[off])))
}

// storeUint32 atomically stores v at b[off:].
func storeUint32(b []byte, off int, v uint32) {
	_ = b[off+3]
	// SAFETY: as in loadUint32.
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&b[off])), v)
}
