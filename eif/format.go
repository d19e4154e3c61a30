package eif

import (
	"encoding/binary"
	"fmt"
)

// Layout of the EIF header and section headers, from
// aws-nitro-enclaves-image-format src/defs/mod.rs (EifHeader,
// EifSectionHeader). All integers are big-endian and the structs are packed.
const (
	// HeaderSize is the size of the EIF header in bytes.
	HeaderSize = 548
	// SectionHeaderSize is the size of a section header in bytes.
	SectionHeaderSize = 12
	// MaxSections is the number of section slots in the header
	// (MAX_NUM_SECTIONS).
	MaxSections = 32
	// CurrentVersion is the EIF version this package writes (CURRENT_VERSION).
	CurrentVersion = 4
	// MinVersion is the oldest version this package reads: version 1 has no
	// CRC ("V1 -> V2: Add support to generate and check CRC").
	MinVersion = 2

	// FlagArchARM64 is the header flag bit marking an aarch64 image
	// (EIF_HDR_ARCH_ARM64); clear means x86_64.
	FlagArchARM64 = 0x1

	// DefaultMemoryBytes is the default_mem nitro-cli's builder writes: 1 GiB.
	DefaultMemoryBytes = 1 << 30
	// DefaultCPUCount is the default_cpus nitro-cli's builder writes.
	DefaultCPUCount = 2

	// CmdlineMaxBytes bounds the cmdline section read by File.Cmdline.
	CmdlineMaxBytes = 64 << 10
	// MetadataMaxBytes bounds the metadata section (JSON) read into memory.
	MetadataMaxBytes = 1 << 20
	// SignatureMaxBytes bounds the signature section (CBOR) read into memory.
	SignatureMaxBytes = 1 << 20

	// eifMagic is EIF_MAGIC, ".eif" in ASCII.
	eifMagic = ".eif"
)

// Header field offsets.
const (
	offVersion  = 4
	offFlags    = 6
	offMem      = 8
	offCPUs     = 16
	offNumSect  = 26
	offOffsets  = 28
	offSizes    = offOffsets + 8*MaxSections
	offUnused   = offSizes + 8*MaxSections
	offChecksum = offUnused + 4 // eif_crc32, the header's last field
)

// SectionType is the type of an EIF section (EifSectionType).
type SectionType uint16

// Section types, in the numbering of EifSectionType.
const (
	SectionInvalid   SectionType = 0
	SectionKernel    SectionType = 1
	SectionCmdline   SectionType = 2
	SectionRamdisk   SectionType = 3
	SectionSignature SectionType = 4
	SectionMetadata  SectionType = 5
)

// String returns the section type's name.
func (t SectionType) String() string {
	switch t {
	case SectionKernel:
		return "kernel"
	case SectionCmdline:
		return "cmdline"
	case SectionRamdisk:
		return "ramdisk"
	case SectionSignature:
		return "signature"
	case SectionMetadata:
		return "metadata"
	}
	return fmt.Sprintf("invalid(%d)", uint16(t))
}

// Arch is the CPU architecture an EIF is built for.
type Arch uint8

// Architectures an EIF header can name.
const (
	ArchX86_64 Arch = iota
	ArchARM64
)

// String returns the architecture as eif_build's --arch spells it.
func (a Arch) String() string {
	if a == ArchARM64 {
		return "aarch64"
	}
	return "x86_64"
}

// ParseArch parses an --arch value ("x86_64" or "aarch64"; "amd64" and
// "arm64" are accepted too).
func ParseArch(s string) (Arch, error) {
	switch s {
	case "x86_64", "amd64", "":
		return ArchX86_64, nil
	case "aarch64", "arm64":
		return ArchARM64, nil
	}
	return 0, fmt.Errorf("eif: unknown architecture %q (want x86_64 or aarch64)", s)
}

// header is the decoded EIF header (EifHeader).
type header struct {
	magic       [4]byte
	version     uint16
	flags       uint16
	defaultMem  uint64
	defaultCPUs uint64
	numSections uint16
	offsets     [MaxSections]uint64
	sizes       [MaxSections]uint64
	crc         uint32
}

func decodeHeader(b []byte) header {
	var h header
	be := binary.BigEndian
	copy(h.magic[:], b[0:4])
	h.version = be.Uint16(b[offVersion:])
	h.flags = be.Uint16(b[offFlags:])
	h.defaultMem = be.Uint64(b[offMem:])
	h.defaultCPUs = be.Uint64(b[offCPUs:])
	h.numSections = be.Uint16(b[offNumSect:])
	for i := range MaxSections {
		h.offsets[i] = be.Uint64(b[offOffsets+8*i:])
		h.sizes[i] = be.Uint64(b[offSizes+8*i:])
	}
	h.crc = be.Uint32(b[offChecksum:])
	return h
}

func (h *header) encode() []byte {
	b := make([]byte, HeaderSize)
	be := binary.BigEndian
	copy(b[0:4], h.magic[:])
	be.PutUint16(b[offVersion:], h.version)
	be.PutUint16(b[offFlags:], h.flags)
	be.PutUint64(b[offMem:], h.defaultMem)
	be.PutUint64(b[offCPUs:], h.defaultCPUs)
	be.PutUint16(b[offNumSect:], h.numSections)
	for i := range MaxSections {
		be.PutUint64(b[offOffsets+8*i:], h.offsets[i])
		be.PutUint64(b[offSizes+8*i:], h.sizes[i])
	}
	be.PutUint32(b[offChecksum:], h.crc)
	return b
}

func encodeSectionHeader(t SectionType, size uint64) []byte {
	b := make([]byte, SectionHeaderSize)
	binary.BigEndian.PutUint16(b[0:], uint16(t))
	binary.BigEndian.PutUint64(b[4:], size)
	return b
}

// FormatError reports a structural problem in an EIF.
type FormatError struct {
	Offset  int64  // byte offset in the file the problem was found at
	Section int    // index of the section concerned, or -1 for the header
	Msg     string // what is wrong
	Err     error  // a sentinel such as ErrCRCMismatch, or nil
}

// Unwrap returns e.Err.
func (e *FormatError) Unwrap() error { return e.Err }

// Error returns "eif: <msg> (section N) at byte 0x...".
func (e *FormatError) Error() string {
	if e.Section < 0 {
		return fmt.Sprintf("eif: %s at byte %#x", e.Msg, e.Offset)
	}
	return fmt.Sprintf("eif: %s (section %d) at byte %#x", e.Msg, e.Section, e.Offset)
}

func formatErr(off int64, section int, format string, args ...any) *FormatError {
	return &FormatError{Offset: off, Section: section, Msg: fmt.Sprintf(format, args...)}
}
