package eif

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"sync"
	"sync/atomic"
)

// PCRSize is the size of a SHA-384 PCR value in bytes.
const PCRSize = sha512.Size384

// HashAlgorithm is the "HashAlgorithm" value nitro-cli prints: the Rust Debug
// form of its sha2 hasher, as in every public example (nitro-cli
// docs/image_signing.md).
const HashAlgorithm = "Sha384 { ... }"

// ErrCRCMismatch is wrapped by the error Measure returns when the CRC-32
// computed over the file differs from the header's.
var ErrCRCMismatch = errors.New("eif: CRC-32 mismatch")

// Measurements are the PCR values of an EIF, as nitro-cli computes them.
type Measurements struct {
	PCR0 []byte // extend(SHA384(kernel || cmdline || ramdisks...))
	PCR1 []byte // extend(SHA384(kernel || cmdline || ramdisk0))
	PCR2 []byte // extend(SHA384(ramdisk1 || ramdisk2 || ...))
	PCR8 []byte // extend(SHA384(signing certificate DER)); nil when unsigned
}

// Map returns the measurements keyed as nitro-cli prints them, hex-encoded,
// including "HashAlgorithm".
func (m *Measurements) Map() map[string]string {
	out := map[string]string{
		"HashAlgorithm": HashAlgorithm,
		"PCR0":          hex.EncodeToString(m.PCR0),
		"PCR1":          hex.EncodeToString(m.PCR1),
		"PCR2":          hex.EncodeToString(m.PCR2),
	}
	if m.PCR8 != nil {
		out["PCR8"] = hex.EncodeToString(m.PCR8)
	}
	return out
}

// MarshalJSON gives nitro-cli's object: {"HashAlgorithm": ..., "PCR0": hex,
// "PCR1": hex, "PCR2": hex[, "PCR8": hex]}, keys sorted.
func (m *Measurements) MarshalJSON() ([]byte, error) {
	return json.Marshal(m.Map()) // encoding/json sorts map keys.
}

// Extend returns SHA384(prev || data), the PCR extend operation. A nil prev
// means a zero (reset) PCR.
func Extend(prev, data []byte) []byte {
	h := sha512.New384()
	if prev == nil {
		prev = make([]byte, PCRSize)
	}
	h.Write(prev)
	h.Write(data)
	return h.Sum(nil)
}

// extendDigest returns the PCR for content whose SHA-384 is h's sum.
func extendDigest(h hash.Hash) []byte { return Extend(nil, h.Sum(nil)) }

// PCR3 returns PCR3 for a parent instance's IAM role ARN: the ARN bytes
// extended into a zero PCR (no inner hash), as AWS documents it.
func PCR3(roleARN string) []byte { return Extend(nil, []byte(roleARN)) }

// PCR4 returns PCR4 for a parent instance ID, extended like PCR3.
func PCR4(instanceID string) []byte { return Extend(nil, []byte(instanceID)) }

// PCR8 returns PCR8 for the DER bytes of an EIF signing certificate.
func PCR8(certDER []byte) []byte { return ContentPCR(certDER) }

// ContentPCR returns extend(SHA384(data)), the value `nitro-cli pcr --input`
// prints for a file with these contents.
func ContentPCR(data []byte) []byte {
	s := sha512.Sum384(data)
	return Extend(nil, s[:])
}

// ReaderPCR returns extend(SHA384(contents of r)), streaming.
func ReaderPCR(r io.Reader) ([]byte, error) {
	h := sha512.New384()
	if _, err := io.CopyBuffer(h, r, make([]byte, chunkSize)); err != nil {
		return nil, err
	}
	return extendDigest(h), nil
}

// Measure reads the file once and returns its PCRs, checking the CRC-32 on
// the way. When only the CRC is wrong it returns the measurements together
// with an error wrapping ErrCRCMismatch; other errors return nil
// measurements.
func (f *File) Measure() (*Measurements, error) {
	m, crc, err := f.measure()
	if err != nil {
		return nil, err
	}
	if crc != f.hdr.crc {
		return m, f.crcError(crc)
	}
	return m, nil
}

// Verify measures the file (checking its CRC) and, if it is signed, checks
// that the signature verifies and covers its PCR0.
func (f *File) Verify() error {
	m, err := f.Measure()
	if err != nil {
		return err
	}
	if f.sig < 0 {
		return nil
	}
	sig, err := f.Signature()
	if err != nil {
		return err
	}
	return sig.CheckPCR0(m.PCR0)
}

func (f *File) crcError(got uint32) error {
	e := formatErr(offChecksum, -1, "CRC-32 mismatch: header says %#08x, contents give %#08x", f.hdr.crc, got)
	e.Err = ErrCRCMismatch
	return e
}

// measure computes the PCRs and the CRC-32 of the contents.
func (f *File) measure() (*Measurements, uint32, error) {
	var segs []segment
	f.appendSegments(&segs)
	d, err := digest(segs)
	if err != nil {
		return nil, 0, fmt.Errorf("measure eif: %w", err)
	}
	m := &Measurements{PCR0: d.pcr0, PCR1: d.pcr1, PCR2: d.pcr2}
	if f.sig >= 0 {
		sig, err := f.Signature()
		if err != nil {
			return nil, 0, err
		}
		m.PCR8 = PCR8(sig.CertificateDER)
	}
	return m, d.crc, nil
}

// appendSegments lists the file's bytes in order with the digests each feeds,
// exactly as nitro-cli's EifReader feeds them.
func (f *File) appendSegments(segs *[]segment) {
	*segs = append(*segs, segment{r: f.r, off: 0, n: offChecksum, to: toCRC})
	rd := 0
	for _, s := range f.sections {
		*segs = append(*segs, segment{r: f.r, off: s.Offset, n: SectionHeaderSize, to: toCRC})
		*segs = append(*segs, segment{r: f.r, off: s.dataOffset(), n: s.Size, to: dataDigests(s.Type, &rd)})
	}
}

// dataDigests returns the digests a section's data feeds: the CRC always;
// kernel and cmdline PCR0 and PCR1; the first ramdisk PCR0 and PCR1, later
// ones PCR0 and PCR2. *ramdisks counts the ramdisks seen so far. The reader
// and the builder both route through it, so they cannot disagree.
func dataDigests(t SectionType, ramdisks *int) int {
	to := toCRC
	switch t {
	case SectionKernel, SectionCmdline:
		to |= toPCR0 | toPCR1
	case SectionRamdisk:
		to |= toPCR0
		if *ramdisks == 0 {
			to |= toPCR1
		} else {
			to |= toPCR2
		}
		*ramdisks++
	}
	return to
}

// Digest destinations of a segment.
const (
	toCRC = 1 << iota
	toPCR0
	toPCR1
	toPCR2
)

// chunkSize is the read size of the measuring pipeline: large enough that
// per-chunk overhead vanishes next to hashing, small enough to stay in L2.
const chunkSize = 1 << 20

// chunkBuffers is the number of chunks in flight between the reader and the
// hashers.
const chunkBuffers = 8

// segment is a byte range of r and the digests it feeds.
type segment struct {
	r   io.ReaderAt
	off int64
	n   int64
	to  int
}

type digests struct {
	crc              uint32
	pcr0, pcr1, pcr2 []byte
	n                int64 // bytes fed to the CRC
}

// chunk is a buffer of segment data on its way to the hashers.
type chunk struct {
	buf  []byte
	to   int
	refs atomic.Int32
}

// digest reads the segments once, in order, feeding the CRC in the reading
// goroutine and the SHA-384 hashers in two worker goroutines.
//
// PCR0 hashes kernel||cmdline||ramdisk0||ramdisk1...; PCR1 hashes the prefix
// kernel||cmdline||ramdisk0 and PCR2 the rest. When (as in every image
// nitro-cli builds) PCR1's input is a prefix of PCR0's, the PCR0 worker
// clones its SHA-384 state at the end of that prefix to get PCR1 for free,
// and the other worker hashes only PCR2's input: total work is one pass plus
// the application ramdisks, spread over two cores. Otherwise the second
// worker hashes PCR1 and PCR2 itself.
func digest(segs []segment) (digests, error) {
	// Size the buffers to the input so that small images stay cheap.
	var total int64
	sharedPrefix, seenPCR2 := true, false
	for _, s := range segs {
		total += s.n
		if s.to&toPCR2 != 0 {
			seenPCR2 = true
		}
		if s.to&toPCR1 != 0 && seenPCR2 {
			sharedPrefix = false
		}
	}
	bufSize := min(int64(chunkSize), max(total, 1))
	nbuf := int(min(int64(chunkBuffers), (total+bufSize-1)/bufSize+1))
	free := make(chan *chunk, nbuf)
	for range nbuf {
		free <- &chunk{buf: make([]byte, bufSize)}
	}
	release := func(c *chunk) {
		if c.refs.Add(-1) == 0 {
			free <- c
		}
	}
	toB := toPCR1 | toPCR2 // what the second worker hashes
	if sharedPrefix {
		toB = toPCR2
	}
	h0, h1, h2 := sha512.New384(), sha512.New384(), sha512.New384()
	var h1Clone hash.Hash
	var cloneErr error
	ch0 := make(chan *chunk, chunkBuffers)
	chB := make(chan *chunk, chunkBuffers)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for c := range ch0 {
			if sharedPrefix && h1Clone == nil && c.to&toPCR1 == 0 {
				h1Clone, cloneErr = cloneHash(h0)
			}
			h0.Write(c.buf)
			release(c)
		}
		if sharedPrefix && h1Clone == nil {
			h1Clone, cloneErr = cloneHash(h0)
		}
	}()
	go func() {
		defer wg.Done()
		for c := range chB {
			if c.to&toPCR1 != 0 {
				h1.Write(c.buf)
			} else {
				h2.Write(c.buf)
			}
			release(c)
		}
	}()

	var d digests
	crc := crc32.NewIEEE()
	var rerr error
	for _, s := range segs {
		for done := int64(0); done < s.n && rerr == nil; {
			c := <-free
			n := min(int64(cap(c.buf)), s.n-done)
			c.buf = c.buf[:n]
			if err := readFull(s.r, c.buf, s.off+done); err != nil {
				rerr = fmt.Errorf("read %d bytes at %#x: %w", n, s.off+done, err)
				free <- c
				break
			}
			done += n
			if s.to&toCRC != 0 {
				crc.Write(c.buf)
				d.n += n
			}
			c.to = s.to
			refs := int32(0)
			if s.to&toPCR0 != 0 {
				refs++
			}
			if s.to&toB != 0 {
				refs++
			}
			if refs == 0 {
				free <- c
				continue
			}
			c.refs.Store(refs)
			if s.to&toPCR0 != 0 {
				ch0 <- c
			}
			if s.to&toB != 0 {
				chB <- c
			}
		}
		if rerr != nil {
			break
		}
	}
	close(ch0)
	close(chB)
	wg.Wait()
	if rerr != nil {
		return digests{}, rerr
	}
	if cloneErr != nil {
		return digests{}, cloneErr
	}
	if sharedPrefix {
		h1 = h1Clone
	}
	d.crc = crc.Sum32()
	d.pcr0, d.pcr1, d.pcr2 = extendDigest(h0), extendDigest(h1), extendDigest(h2)
	return d, nil
}

// cloneHash returns an independent copy of h's state.
func cloneHash(h hash.Hash) (hash.Hash, error) {
	c, ok := h.(hash.Cloner)
	if !ok {
		return nil, fmt.Errorf("hash %T cannot be cloned", h)
	}
	hc, err := c.Clone()
	if err != nil {
		return nil, fmt.Errorf("clone hash: %w", err)
	}
	return hc.(hash.Hash), nil
}

// bytesReaderAt adapts a byte slice (a section header built in memory).
func bytesReaderAt(b []byte) io.ReaderAt { return bytes.NewReader(b) }
