package devicetest

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"
)

// load32 atomically loads the little-endian uint32 at b[0:4]; ok is false
// if b is shorter than 4 bytes or not 4-byte aligned in host memory.
func load32(b []byte) (v uint32, ok bool) {
	if len(b) < 4 || uintptr(unsafe.Pointer(&b[0]))%4 != 0 {
		return 0, false
	}
	var buf [4]byte
	// SAFETY: b[0:4] is in bounds and 4-byte aligned (checked above).
	binary.NativeEndian.PutUint32(buf[:], atomic.LoadUint32((*uint32)(unsafe.Pointer(&b[0]))))
	return binary.LittleEndian.Uint32(buf[:]), true
}

// store32 atomically stores v little-endian at b[0:4]; ok is false if b is
// shorter than 4 bytes or not 4-byte aligned in host memory.
func store32(b []byte, v uint32) (ok bool) {
	if len(b) < 4 || uintptr(unsafe.Pointer(&b[0]))%4 != 0 {
		return false
	}
	var buf [4]byte
	binary.LittleEndian.PutUint32(buf[:], v)
	// SAFETY: b[0:4] is in bounds and 4-byte aligned (checked above).
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&b[0])), binary.NativeEndian.Uint32(buf[:]))
	return true
}
