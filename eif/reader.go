package eif

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Section is one validated section of an EIF.
type Section struct {
	Type   SectionType
	Offset int64 // offset of the section header in the file
	Size   int64 // size of the data, after the 12-byte section header
}

// dataOffset returns the offset of the section's data.
func (s Section) dataOffset() int64 { return s.Offset + SectionHeaderSize }

// File is a parsed, structurally validated EIF. Its methods read section data
// lazily from the underlying io.ReaderAt and are safe for concurrent use as
// long as that ReaderAt is.
type File struct {
	r        io.ReaderAt
	size     int64
	closer   io.Closer
	hdr      header
	sections []Section
	kernel   int   // index of the kernel section
	cmdline  int   // index of the cmdline section
	ramdisks []int // indices of the ramdisk sections, in file order
	sig      int   // index of the signature section, or -1
	meta     int   // index of the metadata section, or -1
}

// Open opens the EIF at path and validates its structure. The returned
// File's Close closes the underlying file.
func Open(path string) (*File, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open eif: %w", err)
	}
	st, err := fd.Stat()
	if err != nil {
		fd.Close()
		return nil, fmt.Errorf("open eif: %w", err)
	}
	if !st.Mode().IsRegular() {
		fd.Close()
		return nil, fmt.Errorf("open eif %s: not a regular file", path)
	}
	f, err := NewReader(fd, st.Size())
	if err != nil {
		fd.Close()
		return nil, fmt.Errorf("load eif %s: %w", path, err)
	}
	f.closer = fd
	return f, nil
}

// NewReader validates the structure of the EIF of the given size read
// through r: magic, version, flags, section count, offsets and sizes inside
// the file and matching the section headers, sections contiguous and
// covering the file, exactly one kernel and one cmdline, at least one
// ramdisk. It reads only the headers; the CRC is checked by Measure.
// Errors are *FormatError, or I/O errors from r.
func NewReader(r io.ReaderAt, size int64) (*File, error) {
	if size < HeaderSize {
		return nil, formatErr(0, -1, "file is %d bytes, shorter than the %d-byte EIF header (truncated?)", size, HeaderSize)
	}
	buf := make([]byte, HeaderSize)
	if err := readFull(r, buf, 0); err != nil {
		return nil, fmt.Errorf("read eif header: %w", err)
	}
	h := decodeHeader(buf)
	if string(h.magic[:]) != eifMagic {
		return nil, formatErr(0, -1, "bad magic %q, want %q (not an EIF)", h.magic[:], eifMagic)
	}
	switch {
	case h.version == 1:
		return nil, formatErr(offVersion, -1, "EIF version 1 is not supported: it predates the CRC-32 (need version %d to %d)", MinVersion, CurrentVersion)
	case h.version < MinVersion || h.version > CurrentVersion:
		return nil, formatErr(offVersion, -1, "unsupported EIF version %d (need %d to %d)", h.version, MinVersion, CurrentVersion)
	}
	if h.flags&^FlagArchARM64 != 0 {
		return nil, formatErr(offFlags, -1, "unknown header flags %#04x (only bit 0, arm64, is defined)", h.flags)
	}
	n := int(h.numSections)
	switch {
	case n == 0:
		return nil, formatErr(offNumSect, -1, "header lists no sections")
	case n > MaxSections:
		return nil, formatErr(offNumSect, -1, "header lists %d sections, more than the %d the format allows", n, MaxSections)
	}

	f := &File{r: r, size: size, hdr: h, kernel: -1, cmdline: -1, sig: -1, meta: -1}
	f.sections = make([]Section, 0, n)
	next := int64(HeaderSize) // where the next section must start
	var sh [SectionHeaderSize]byte
	for i := range n {
		off, sz := h.offsets[i], h.sizes[i]
		switch {
		case off >= uint64(size):
			return nil, formatErr(offOffsets+8*int64(i), i, "offset %#x is past the end of the file (%d bytes)", off, size)
		case uint64(size)-off < SectionHeaderSize:
			return nil, formatErr(int64(off), i, "section header at %#x runs past the end of the file (%d bytes; truncated?)", off, size)
		case sz > uint64(size)-off-SectionHeaderSize:
			return nil, formatErr(int64(off), i, "section size %d runs past the end of the file (%d bytes; truncated?)", sz, size)
		case int64(off) != next:
			return nil, formatErr(int64(off), i, "section starts at %#x, want %#x: sections must be contiguous and in header order", off, next)
		}
		if err := readFull(r, sh[:], int64(off)); err != nil {
			return nil, fmt.Errorf("read eif section %d header: %w", i, err)
		}
		typ := SectionType(binary.BigEndian.Uint16(sh[0:]))
		flags := binary.BigEndian.Uint16(sh[2:])
		hsz := binary.BigEndian.Uint64(sh[4:])
		if typ == SectionInvalid || typ > SectionMetadata {
			return nil, formatErr(int64(off), i, "invalid section type %d", uint16(typ))
		}
		if flags != 0 {
			return nil, formatErr(int64(off)+2, i, "%s section has flags %#04x, want 0", typ, flags)
		}
		if hsz != sz {
			return nil, formatErr(int64(off)+4, i, "%s section header says %d bytes but the EIF header says %d", typ, hsz, sz)
		}
		switch {
		case typ == SectionSignature && h.version < 3:
			return nil, formatErr(int64(off), i, "signature section in an EIF version %d file (signatures need version 3)", h.version)
		case typ == SectionMetadata && h.version < 4:
			return nil, formatErr(int64(off), i, "metadata section in an EIF version %d file (metadata needs version 4)", h.version)
		}
		s := Section{Type: typ, Offset: int64(off), Size: int64(sz)}
		var dup *int
		switch typ {
		case SectionKernel:
			dup = &f.kernel
		case SectionCmdline:
			dup = &f.cmdline
		case SectionSignature:
			dup = &f.sig
		case SectionMetadata:
			dup = &f.meta
		case SectionRamdisk:
			f.ramdisks = append(f.ramdisks, i)
		}
		if dup != nil {
			if *dup >= 0 {
				return nil, formatErr(int64(off), i, "second %s section (the first is section %d); want exactly one", typ, *dup)
			}
			*dup = i
		}
		f.sections = append(f.sections, s)
		next = s.dataOffset() + s.Size
	}
	if next != size {
		return nil, formatErr(next, n-1, "%d trailing bytes after the last section", size-next)
	}
	switch {
	case f.kernel < 0:
		return nil, formatErr(HeaderSize, -1, "no kernel section (want exactly one)")
	case f.cmdline < 0:
		return nil, formatErr(HeaderSize, -1, "no cmdline section (want exactly one)")
	case len(f.ramdisks) == 0:
		return nil, formatErr(HeaderSize, -1, "no ramdisk section (want at least one)")
	}
	return f, nil
}

// readFull reads exactly len(b) bytes at off, mapping a short read to
// io.ErrUnexpectedEOF.
func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Close closes the file opened by Open; it does nothing for a File from
// NewReader.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	return f.closer.Close()
}

// Version returns the EIF format version (2 to 4).
func (f *File) Version() uint16 { return f.hdr.version }

// Arch returns the architecture the header's flags name.
func (f *File) Arch() Arch {
	if f.hdr.flags&FlagArchARM64 != 0 {
		return ArchARM64
	}
	return ArchX86_64
}

// Flags returns the raw header flags.
func (f *File) Flags() uint16 { return f.hdr.flags }

// DefaultMemory returns the header's default_mem, in bytes.
func (f *File) DefaultMemory() uint64 { return f.hdr.defaultMem }

// DefaultCPUs returns the header's default_cpus.
func (f *File) DefaultCPUs() uint64 { return f.hdr.defaultCPUs }

// HeaderCRC returns the eif_crc32 recorded in the header.
func (f *File) HeaderCRC() uint32 { return f.hdr.crc }

// Size returns the size of the EIF in bytes.
func (f *File) Size() int64 { return f.size }

// Sections returns the sections in header (and file) order.
func (f *File) Sections() []Section { return append([]Section(nil), f.sections...) }

func (f *File) sectionReader(i int) *io.SectionReader {
	s := f.sections[i]
	return io.NewSectionReader(f.r, s.dataOffset(), s.Size)
}

// Kernel returns a reader for the kernel image (bzImage or Image).
func (f *File) Kernel() *io.SectionReader { return f.sectionReader(f.kernel) }

// Ramdisks returns readers for the ramdisks, in file order.
func (f *File) Ramdisks() []*io.SectionReader {
	rs := make([]*io.SectionReader, len(f.ramdisks))
	for i, idx := range f.ramdisks {
		rs[i] = f.sectionReader(idx)
	}
	return rs
}

// IsSigned reports whether the EIF has a signature section.
func (f *File) IsSigned() bool { return f.sig >= 0 }

// Cmdline returns the kernel command line, without trailing NUL bytes. It
// fails if the section is longer than CmdlineMaxBytes.
func (f *File) Cmdline() (string, error) {
	b, err := f.readSection(f.cmdline, CmdlineMaxBytes)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\x00"), nil
}

// readSection reads section i's data into memory, refusing more than max
// bytes.
func (f *File) readSection(i int, max int64) ([]byte, error) {
	s := f.sections[i]
	if s.Size > max {
		return nil, formatErr(s.Offset, i, "%s section is %d bytes, more than the %d allowed", s.Type, s.Size, max)
	}
	b := make([]byte, s.Size)
	if err := readFull(f.r, b, s.dataOffset()); err != nil {
		return nil, fmt.Errorf("read eif %s section %d: %w", s.Type, i, err)
	}
	return b, nil
}
