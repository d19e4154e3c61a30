package eif

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"time"
)

// Blob is a sized, re-readable input of Build (a kernel or a ramdisk).
// *io.SectionReader and *bytes.Reader are Blobs; for an *os.File use
// io.NewSectionReader(f, 0, size).
type Blob interface {
	io.ReaderAt
	Size() int64
}

// BuildOptions describe the EIF Build writes. The flags of AWS's eif_build
// map onto these fields.
type BuildOptions struct {
	Kernel       Blob      // bzImage (x86_64) or Image (aarch64); required
	KernelConfig io.Reader // optional kernel .config: sets OperatingSystem and KernelVersion as eif_build does
	Cmdline      string    // kernel command line; written without a trailing NUL
	Ramdisks     []Blob    // at least one, written and measured in this order

	Name           string          // ImageName; required by the format, "" is written as is
	Version        string          // ImageVersion; "" means "1.0" (eif_build's default)
	CustomMetadata json.RawMessage // CustomMetadata (--metadata), or nil for null
	DockerInfo     json.RawMessage // DockerInfo, or nil for null

	BuildTime        time.Time // BuildTime; the zero time means time.Now
	BuildTool        string    // "" means "nitrovm"
	BuildToolVersion string    // "" means "0.0.0"
	OperatingSystem  string    // "" means "OS" (eif_build's default) unless KernelConfig sets it
	KernelVersion    string    // "" means "kernel" (eif_build's default) unless KernelConfig sets it

	Arch          Arch   // header flag
	DefaultMemory uint64 // header default_mem in bytes; 0 means DefaultMemoryBytes
	DefaultCPUs   uint64 // header default_cpus; 0 means DefaultCPUCount

	// Signer and Certificate, both or neither, add a signature section: an
	// ECDSA COSE_Sign1 over PCR0 (ES384 for a P-384 key), giving PCR8.
	Signer      crypto.Signer
	Certificate *x509.Certificate
}

// Build writes an EIF version 4 to w in nitro-cli's layout (header, kernel,
// cmdline, metadata, ramdisks, signature) and returns its measurements.
// Inputs are streamed, never held in memory: Build reads them once to
// measure them and once more to write them. With a fixed BuildTime (and no
// signature, whose ECDSA nonce is random) the output is byte-for-byte
// reproducible.
func Build(w io.Writer, opts BuildOptions) (*Measurements, error) {
	if opts.Kernel == nil {
		return nil, errors.New("eif: build: no kernel")
	}
	if len(opts.Ramdisks) == 0 {
		return nil, errors.New("eif: build: no ramdisk (need at least one)")
	}
	if strings.IndexByte(opts.Cmdline, 0) >= 0 {
		return nil, errors.New("eif: build: cmdline contains a NUL byte")
	}
	signed := opts.Signer != nil || opts.Certificate != nil
	if signed && (opts.Signer == nil || opts.Certificate == nil) {
		return nil, errors.New("eif: build: a signing key needs a certificate and vice versa")
	}
	nsec := 3 + len(opts.Ramdisks)
	if signed {
		nsec++
	}
	if nsec > MaxSections {
		return nil, fmt.Errorf("eif: build: %d sections, more than the %d the format allows (at most %d ramdisks)", nsec, MaxSections, MaxSections-4)
	}
	meta, err := buildMetadata(&opts)
	if err != nil {
		return nil, err
	}
	cmdline := []byte(opts.Cmdline)

	// Lay out the sections and list the bytes each one contributes.
	type sect struct {
		typ  SectionType
		data Blob
	}
	sects := []sect{
		{SectionKernel, opts.Kernel},
		{SectionCmdline, bytes.NewReader(cmdline)},
		{SectionMetadata, bytes.NewReader(meta)},
	}
	for _, r := range opts.Ramdisks {
		if r == nil {
			return nil, errors.New("eif: build: nil ramdisk")
		}
		sects = append(sects, sect{SectionRamdisk, r})
	}
	h := header{
		version:     CurrentVersion,
		defaultMem:  opts.DefaultMemory,
		defaultCPUs: opts.DefaultCPUs,
		numSections: uint16(nsec),
	}
	copy(h.magic[:], eifMagic)
	if opts.Arch == ArchARM64 {
		h.flags = FlagArchARM64
	}
	if h.defaultMem == 0 {
		h.defaultMem = DefaultMemoryBytes
	}
	if h.defaultCPUs == 0 {
		h.defaultCPUs = DefaultCPUCount
	}
	var segs []segment
	off := int64(HeaderSize)
	rd := 0
	for i, s := range sects {
		n := s.data.Size()
		if n < 0 {
			return nil, fmt.Errorf("eif: build: %s has negative size", s.typ)
		}
		h.offsets[i], h.sizes[i] = uint64(off), uint64(n)
		segs = append(segs, segment{r: bytesReaderAt(encodeSectionHeader(s.typ, uint64(n))), n: SectionHeaderSize, to: toCRC})
		segs = append(segs, segment{r: s.data, n: n, to: dataDigests(s.typ, &rd)})
		off += SectionHeaderSize + n
	}

	d, err := digest(segs)
	if err != nil {
		return nil, fmt.Errorf("eif: build: read inputs: %w", err)
	}
	m := &Measurements{PCR0: d.pcr0, PCR1: d.pcr1, PCR2: d.pcr2}
	crcRest, lenRest := d.crc, uint64(d.n)
	if signed {
		sig, err := signatureSection(opts.Signer, opts.Certificate, m.PCR0)
		if err != nil {
			return nil, fmt.Errorf("eif: build: %w", err)
		}
		sigSect := append(encodeSectionHeader(SectionSignature, uint64(len(sig))), sig...)
		h.offsets[nsec-1], h.sizes[nsec-1] = uint64(off), uint64(len(sig))
		crcRest = crc32.Update(crcRest, crc32.IEEETable, sigSect)
		lenRest += uint64(len(sigSect))
		m.PCR8 = PCR8(opts.Certificate.Raw)
		segs = append(segs, segment{r: bytesReaderAt(sigSect), n: int64(len(sigSect))})
	}
	if err := writeImage(w, &h, crcRest, lenRest, segs); err != nil {
		return nil, fmt.Errorf("eif: build: write: %w", err)
	}
	return m, nil
}

// writeImage sets h's CRC-32 from crcRest, the CRC-32 of the lenRest bytes
// that follow the header, and writes h and then the bytes of segs to w.
func writeImage(w io.Writer, h *header, crcRest uint32, lenRest uint64, segs []segment) error {
	h.crc = crcCombine(crc32.ChecksumIEEE(h.encode()[:offChecksum]), crcRest, lenRest)
	bw := bufio.NewWriterSize(w, chunkSize)
	if _, err := bw.Write(h.encode()); err != nil {
		return err
	}
	buf := make([]byte, chunkSize)
	for _, s := range segs {
		if _, err := io.CopyBuffer(bw, io.NewSectionReader(s.r, s.off, s.n), buf); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// buildMetadata returns the metadata section, serialized as serde_json
// writes EifIdentityInfo: compact, fields in declaration order, no HTML
// escaping.
func buildMetadata(opts *BuildOptions) ([]byte, error) {
	bi := BuildInfo{
		BuildTime:        rfc3339(opts.BuildTime),
		BuildTool:        orDefault(opts.BuildTool, "nitrovm"),
		BuildToolVersion: orDefault(opts.BuildToolVersion, "0.0.0"),
		OperatingSystem:  orDefault(opts.OperatingSystem, "OS"),
		KernelVersion:    orDefault(opts.KernelVersion, "kernel"),
	}
	if opts.KernelConfig != nil {
		os, kv, err := parseKernelConfig(opts.KernelConfig)
		if err != nil {
			return nil, err
		}
		bi.OperatingSystem, bi.KernelVersion = os, kv
	}
	for name, raw := range map[string]json.RawMessage{"custom metadata": opts.CustomMetadata, "docker info": opts.DockerInfo} {
		if len(raw) > 0 && !json.Valid(raw) {
			return nil, fmt.Errorf("eif: build: %s is not valid JSON", name)
		}
	}
	md := Metadata{
		ImageName:      opts.Name,
		ImageVersion:   orDefault(opts.Version, "1.0"),
		BuildMetadata:  bi,
		DockerInfo:     rawOrNull(opts.DockerInfo),
		CustomMetadata: rawOrNull(opts.CustomMetadata),
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(md); err != nil {
		return nil, fmt.Errorf("eif: build: metadata: %w", err)
	}
	out := bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	if len(out) > MetadataMaxBytes {
		return nil, fmt.Errorf("eif: build: metadata is %d bytes, more than the %d allowed", len(out), MetadataMaxBytes)
	}
	return out, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// rfc3339 formats t as chrono's to_rfc3339 does: UTC as "+00:00", and 0, 3,
// 6 or 9 fractional digits as needed. The zero time means now.
func rfc3339(t time.Time) string {
	if t.IsZero() {
		t = time.Now()
	}
	t = t.UTC()
	layout := "2006-01-02T15:04:05"
	switch ns := t.Nanosecond(); {
	case ns == 0:
	case ns%1e6 == 0:
		layout += ".000"
	case ns%1e3 == 0:
		layout += ".000000"
	default:
		layout += ".000000000"
	}
	return t.Format(layout) + "+00:00"
}

// parseKernelConfig extracts the OS and kernel version from the third line of
// a kernel .config, "# Linux/x86_64 4.14.177-104.253.amzn2.x86_64 Kernel
// Configuration", split on ' ', '/' and '-' as eif_build does
// (image-format src/utils/identity.rs): words 1 and 3.
func parseKernelConfig(r io.Reader) (osName, kernel string, err error) {
	sc := bufio.NewScanner(io.LimitReader(r, 1<<20))
	for i := 0; sc.Scan(); i++ {
		if i < 2 {
			continue
		}
		words := splitKeepEmpty(sc.Text(), " /-")
		get := func(i int) string {
			if i < len(words) {
				return words[i]
			}
			return "Unknown"
		}
		return get(1), get(3), nil
	}
	if err := sc.Err(); err != nil {
		return "", "", fmt.Errorf("eif: build: read kernel config: %w", err)
	}
	return "", "", errors.New("eif: build: kernel config has fewer than 3 lines")
}

// splitKeepEmpty splits s at every byte in seps, keeping empty fields (as
// Rust's str::split does).
func splitKeepEmpty(s, seps string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(seps, s[i]) >= 0 {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}
