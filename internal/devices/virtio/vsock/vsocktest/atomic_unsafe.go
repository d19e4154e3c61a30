package vsocktest

import (
	"sync/atomic"
	"unsafe"
)

// load32 atomically loads the 32-bit word at b[off:off+4] in host order.
//
// Preconditions: off+4 <= len(b) and &b[off] is 4-byte aligned (ring
// headers are, VirtIO 1.1 §2.6).
func load32(b []byte, off int) uint32 {
	if off < 0 || off+4 > len(b) {
		panic("vsocktest: load32 out of range")
	}
	// SAFETY: b[off:off+4] is in bounds (checked above) and aligned
	// (precondition), so it is a valid *uint32 into b's backing array.
	return atomic.LoadUint32((*uint32)(unsafe.Pointer(&b[off])))
}

// store32 atomically stores v at b[off:off+4] in host order.
//
// Preconditions: as load32.
func store32(b []byte, off int, v uint32) {
	if off < 0 || off+4 > len(b) {
		panic("vsocktest: store32 out of range")
	}
	// SAFETY: as in load32.
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&b[off])), v)
}
