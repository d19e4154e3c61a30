package virtio

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"
)

// wordAt returns a pointer to the naturally aligned 32-bit word of b that
// contains the 16-bit field at b[off:off+2], and the field's byte position
// inside that word (0 or 2). ok is false if the field is not 2-byte aligned
// in host memory or its containing word does not lie inside b.
func wordAt(b []byte, off int) (w *uint32, pos int, ok bool) {
	if off < 0 || off+2 > len(b) {
		return nil, 0, false
	}
	addr := uintptr(unsafe.Pointer(&b[off]))
	switch addr % 4 {
	case 0:
		if off+4 > len(b) {
			return nil, 0, false
		}
		// SAFETY: b[off:off+4] is in bounds (checked above) and &b[off] is
		// 4-byte aligned, so it is a valid *uint32 into b's backing array.
		return (*uint32)(unsafe.Pointer(&b[off])), 0, true
	case 2:
		if off < 2 {
			return nil, 0, false
		}
		// SAFETY: b[off-2:off+2] is in bounds (off >= 2, off+2 <= len(b))
		// and &b[off-2] is 4-byte aligned because &b[off] is 2 mod 4.
		return (*uint32)(unsafe.Pointer(&b[off-2])), 2, true
	}
	return nil, 0, false
}

// load16 atomically loads the little-endian uint16 at b[off:off+2] by
// loading its aligned containing word. ok is false if that is impossible
// (see wordAt); the caller then falls back to a plain read.
func load16(b []byte, off int) (v uint16, ok bool) {
	w, pos, ok := wordAt(b, off)
	if !ok {
		return 0, false
	}
	var buf [4]byte
	binary.NativeEndian.PutUint32(buf[:], atomic.LoadUint32(w))
	return binary.LittleEndian.Uint16(buf[pos:]), true
}

// store32 atomically stores the little-endian uint32 v at b[off:off+4],
// which must be 4-byte aligned in host memory. ok is false otherwise.
func store32(b []byte, off int, v uint32) (ok bool) {
	if off < 0 || off+4 > len(b) {
		return false
	}
	if uintptr(unsafe.Pointer(&b[off]))%4 != 0 {
		return false
	}
	var buf [4]byte
	binary.LittleEndian.PutUint32(buf[:], v)
	// SAFETY: b[off:off+4] is in bounds and 4-byte aligned (checked above).
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&b[off])), binary.NativeEndian.Uint32(buf[:]))
	return true
}

// store16 stores the little-endian uint16 v at b[off:off+2] with a single
// 16-bit store if that field is 2-byte aligned in host memory (such a
// store is single-copy atomic on amd64 and arm64), else byte by byte.
func store16(b []byte, off int, v uint16) {
	if off < 0 || off+2 > len(b) {
		return
	}
	var buf [2]byte
	binary.LittleEndian.PutUint16(buf[:], v)
	if uintptr(unsafe.Pointer(&b[off]))%2 != 0 {
		copy(b[off:], buf[:])
		return
	}
	// SAFETY: b[off:off+2] is in bounds and 2-byte aligned (checked above).
	*(*uint16)(unsafe.Pointer(&b[off])) = binary.NativeEndian.Uint16(buf[:])
}
