// Package x86 implements the x86-64 machine setup of a nitrovm guest: the
// Linux boot protocol for bzImage kernels (setup header, boot_params, e820,
// command line, initrd placement), boot page tables and GDT, boot registers,
// CPUID and MSR setup, and the MP and ACPI tables that describe CPUs and
// virtio-mmio devices. Everything here is pure data except the few functions
// taking a *memory.Guest to write into.
package x86

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/nitrovm/nitrovm/internal/memory"
)

// Offsets into the bzImage / boot_params setup header
// (Documentation/arch/x86/boot.rst, arch/x86/include/uapi/asm/bootparam.h).
const (
	hdrSetupSects      = 0x1f1 // u8 setup_sects
	hdrBootFlag        = 0x1fe // u16 boot_flag, 0xAA55
	hdrJump            = 0x200 // u16 jump; byte 0x201 = header length past 0x202
	hdrMagic           = 0x202 // u32 "HdrS"
	hdrVersion         = 0x206 // u16 boot protocol version
	hdrTypeOfLoader    = 0x210 // u8
	hdrLoadFlags       = 0x211 // u8
	hdrRamdiskImage    = 0x218 // u32
	hdrRamdiskSize     = 0x21c // u32
	hdrHeapEndPtr      = 0x224 // u16
	hdrCmdLinePtr      = 0x228 // u32
	hdrInitrdAddrMax   = 0x22c // u32
	hdrKernelAlignment = 0x230 // u32
	hdrXLoadFlags      = 0x236 // u16
	hdrCmdlineSize     = 0x238 // u32
	hdrInitSize        = 0x260 // u32
	hdrEnd             = 0x280 // bytes of the image read to parse the header

	bootFlagMagic  = 0xaa55
	hdrSMagic      = 0x53726448 // "HdrS" little-endian
	minProtocol    = 0x20c      // 2.12: XLF_KERNEL_64 and 64-bit entry
	xlfKernel64    = 1 << 0     // XLF_KERNEL_64
	loadedHigh     = 1 << 0     // LOADED_HIGH
	canUseHeap     = 1 << 7     // CAN_USE_HEAP
	loaderUndef    = 0xff       // type_of_loader: "undefined" boot loader
	heapEndPtrAddr = 0xfe00     // heap_end_ptr, as other loaders set it
	sectorBytes    = 512
)

// ErrNotBzImage is returned for a kernel image without a usable Linux setup header.
var ErrNotBzImage = errors.New("x86: not a 64-bit-bootable bzImage")

// BzImage is a parsed Linux bzImage.
type BzImage struct {
	Header        []byte // setup header bytes, image offsets [0x1f1, end of header).
	Protocol      uint16 // boot protocol version, e.g. 0x20f for 2.15.
	InitrdAddrMax uint32 // highest address the initrd may end at.
	CmdlineSize   uint32 // longest command line, NUL excluded.
	InitSize      uint32 // memory the kernel needs from its load address while booting.
	PayloadOffset int64  // file offset of the protected-mode kernel.
	PayloadBytes  int64  // size of the protected-mode kernel.
	r             io.ReaderAt
}

// ParseBzImage checks the setup header of the size-byte bzImage in r.
func ParseBzImage(r io.ReaderAt, size int64) (*BzImage, error) {
	if size < hdrEnd {
		return nil, fmt.Errorf("%w: %d bytes is too small", ErrNotBzImage, size)
	}
	var h [hdrEnd]byte
	if _, err := r.ReadAt(h[:], 0); err != nil {
		return nil, fmt.Errorf("x86: read kernel setup header: %w", err)
	}
	le := binary.LittleEndian
	if le.Uint16(h[hdrBootFlag:]) != bootFlagMagic || le.Uint32(h[hdrMagic:]) != hdrSMagic {
		return nil, fmt.Errorf("%w: no boot flag 0xAA55 / \"HdrS\" magic", ErrNotBzImage)
	}
	k := &BzImage{r: r, Protocol: le.Uint16(h[hdrVersion:])}
	if k.Protocol < minProtocol {
		return nil, fmt.Errorf("%w: boot protocol %d.%02d, need 2.12 or later", ErrNotBzImage, k.Protocol>>8, k.Protocol&0xff)
	}
	if le.Uint16(h[hdrXLoadFlags:])&xlfKernel64 == 0 {
		return nil, fmt.Errorf("%w: XLF_KERNEL_64 not set (no 64-bit entry point)", ErrNotBzImage)
	}
	end := min(hdrMagic+int(h[hdrJump+1]), hdrEnd)
	k.Header = append([]byte(nil), h[hdrSetupSects:end]...)
	k.InitrdAddrMax = le.Uint32(h[hdrInitrdAddrMax:])
	k.CmdlineSize = le.Uint32(h[hdrCmdlineSize:])
	k.InitSize = le.Uint32(h[hdrInitSize:])
	sects := int64(h[hdrSetupSects])
	if sects == 0 {
		sects = 4
	}
	k.PayloadOffset = (sects + 1) * sectorBytes
	if k.PayloadOffset >= size {
		return nil, fmt.Errorf("%w: setup (%d sectors) covers the whole %d-byte image", ErrNotBzImage, sects, size)
	}
	k.PayloadBytes = size - k.PayloadOffset
	return k, nil
}

// Load copies the protected-mode kernel to KernelAddr and returns the
// 64-bit entry point.
func (k *BzImage) Load(mem *memory.Guest) (entry uint64, err error) {
	dst, err := mem.Slice(KernelAddr, uint64(k.PayloadBytes))
	if err != nil {
		return 0, fmt.Errorf("x86: kernel of %d bytes does not fit in guest RAM at %#x: %w", k.PayloadBytes, KernelAddr, err)
	}
	if _, err := k.r.ReadAt(dst, k.PayloadOffset); err != nil {
		return 0, fmt.Errorf("x86: read kernel: %w", err)
	}
	return KernelAddr + KernelEntryOffsetBytes, nil
}

// KernelEnd returns the first address past what the kernel may occupy while
// it boots: its image at KernelAddr, and init_size bytes from wherever it
// decompresses (KernelDecompressAddr at the latest).
func (k *BzImage) KernelEnd() uint64 {
	return max(KernelAddr+uint64(k.PayloadBytes), KernelDecompressAddr+uint64(k.InitSize))
}
