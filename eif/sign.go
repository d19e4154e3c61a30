package eif

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"io"
)

// Sign writes to w a copy of f signed by signer, whose certificate is cert,
// as nitro-cli sign-eif does (image-format src/utils/eif_signer.rs,
// sign_image): the new signature section, over f's PCR0, replaces f's own
// where f has one (the sections after it move up or down) and is otherwise
// appended as the last section. Every other byte is copied unchanged, and
// the header gets the new section table and CRC-32. f must be intact (its
// CRC matches) and of version 3 or later. It returns the copy's
// measurements, PCR8 included.
func (f *File) Sign(w io.Writer, signer crypto.Signer, cert *x509.Certificate) (*Measurements, error) {
	if f.hdr.version < 3 {
		return nil, fmt.Errorf("eif: sign: an EIF version %d file cannot hold a signature (version 3 or later can)", f.hdr.version)
	}
	if f.sig < 0 && len(f.sections) >= MaxSections {
		return nil, fmt.Errorf("eif: sign: the file already has the %d sections the format allows, none of them a signature", MaxSections)
	}
	m, err := f.Measure()
	if err != nil {
		return nil, fmt.Errorf("eif: sign: %w", err)
	}
	sig, err := signatureSection(signer, cert, m.PCR0)
	if err != nil {
		return nil, fmt.Errorf("eif: sign: %w", err)
	}
	m.PCR8 = PCR8(cert.Raw)

	// The new section list: f's, with the signature replaced or appended.
	type part struct {
		typ  SectionType
		r    io.ReaderAt
		off  int64
		size int64
	}
	parts := make([]part, 0, len(f.sections)+1)
	for i, s := range f.sections {
		if i == f.sig {
			parts = append(parts, part{SectionSignature, bytesReaderAt(sig), 0, int64(len(sig))})
			continue
		}
		parts = append(parts, part{s.Type, f.r, s.dataOffset(), s.Size})
	}
	if f.sig < 0 {
		parts = append(parts, part{SectionSignature, bytesReaderAt(sig), 0, int64(len(sig))})
	}

	h := f.hdr
	h.numSections = uint16(len(parts))
	h.offsets, h.sizes = [MaxSections]uint64{}, [MaxSections]uint64{}
	var segs []segment
	off := int64(HeaderSize)
	for i, p := range parts {
		h.offsets[i], h.sizes[i] = uint64(off), uint64(p.size)
		segs = append(segs,
			segment{r: bytesReaderAt(encodeSectionHeader(p.typ, uint64(p.size))), n: SectionHeaderSize, to: toCRC},
			segment{r: p.r, off: p.off, n: p.size, to: toCRC})
		off += SectionHeaderSize + p.size
	}
	// A second pass for the CRC: the header, which holds it, comes first.
	d, err := digest(segs)
	if err != nil {
		return nil, fmt.Errorf("eif: sign: read: %w", err)
	}
	if err := writeImage(w, &h, d.crc, uint64(d.n), segs); err != nil {
		return nil, fmt.Errorf("eif: sign: write: %w", err)
	}
	return m, nil
}
