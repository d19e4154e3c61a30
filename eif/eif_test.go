package eif

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, n := range []int{1, 2, 5} {
		in := newInputs(uint64(n), n)
		b, built := mustBuild(t, in.options())
		want0, want1, want2 := independentPCRs(in.kernel, []byte(in.cmdline), in.ramdisks)
		f := mustRead(t, b)
		got, err := f.Measure()
		if err != nil {
			t.Fatalf("%d ramdisks: Measure: %v", n, err)
		}
		for _, c := range []struct {
			name      string
			got, want []byte
		}{
			{"PCR0", got.PCR0, want0}, {"PCR1", got.PCR1, want1}, {"PCR2", got.PCR2, want2},
			{"built PCR0", built.PCR0, want0}, {"built PCR1", built.PCR1, want1}, {"built PCR2", built.PCR2, want2},
		} {
			if !bytes.Equal(c.got, c.want) {
				t.Errorf("%d ramdisks: %s: got %x, want %x", n, c.name, c.got, c.want)
			}
		}
		if got.PCR8 != nil || built.PCR8 != nil {
			t.Errorf("%d ramdisks: unsigned PCR8: got %x / %x, want nil", n, got.PCR8, built.PCR8)
		}
		if f.Version() != 4 || f.Arch() != ArchX86_64 || f.DefaultMemory() != 1<<30 || f.DefaultCPUs() != 2 || f.Size() != int64(len(b)) {
			t.Errorf("header: got v%d %v mem %d cpus %d size %d", f.Version(), f.Arch(), f.DefaultMemory(), f.DefaultCPUs(), f.Size())
		}
		if cl, err := f.Cmdline(); err != nil || cl != in.cmdline {
			t.Errorf("Cmdline: got %q, %v, want %q", cl, err, in.cmdline)
		}
		k, _ := io.ReadAll(f.Kernel())
		if !bytes.Equal(k, in.kernel) {
			t.Errorf("Kernel: got %d bytes, want %d", len(k), len(in.kernel))
		}
		rds := f.Ramdisks()
		if len(rds) != n {
			t.Fatalf("Ramdisks: got %d, want %d", len(rds), n)
		}
		for i, r := range rds {
			rb, _ := io.ReadAll(r)
			if !bytes.Equal(rb, in.ramdisks[i]) {
				t.Errorf("ramdisk %d differs", i)
			}
		}
		// The builder's layout is nitro-cli's: kernel, cmdline, metadata, ramdisks.
		wantTypes := []SectionType{SectionKernel, SectionCmdline, SectionMetadata}
		for range n {
			wantTypes = append(wantTypes, SectionRamdisk)
		}
		for i, s := range f.Sections() {
			if s.Type != wantTypes[i] {
				t.Errorf("section %d: got %v, want %v", i, s.Type, wantTypes[i])
			}
		}
		// A hand-laid-out EIF with the same sections measures the same.
		raw := []rawSect{{SectionKernel, in.kernel}, {SectionCmdline, []byte(in.cmdline)}}
		for _, r := range in.ramdisks {
			raw = append(raw, rawSect{SectionRamdisk, r})
		}
		m2, err := mustRead(t, rawEIF(4, 0, raw)).Measure()
		if err != nil || !bytes.Equal(m2.PCR0, want0) || !bytes.Equal(m2.PCR2, want2) {
			t.Errorf("hand-built EIF: got %x %x, %v, want %x %x", m2.PCR0, m2.PCR2, err, want0, want2)
		}
	}
}

func TestWellKnownValues(t *testing.T) {
	// REFERENCE §2: PCR2 with a single ramdisk, and AWS's documented PCR3 example.
	in := newInputs(1, 1)
	_, m := mustBuild(t, in.options())
	const pcr2One = "21b9efbc184807662e966d34f390821309eeac6802309798826296bf3e8bec7c10edb30948c90ba67310f7b964fc500a"
	if got := hex.EncodeToString(m.PCR2); got != pcr2One {
		t.Errorf("PCR2 (one ramdisk): got %s, want %s", got, pcr2One)
	}
	const pcr3 = "78fce75db17cd4e0a3fb8dad3ad128ca5e77edbb2b2c7f75329dccd99aa5f6ef4fc1f1a452e315b9e98f9e312e6921e6"
	if got := hex.EncodeToString(PCR3("arn:aws:iam::123456789012:role/Webserver")); got != pcr3 {
		t.Errorf("PCR3: got %s, want %s", got, pcr3)
	}
	// PCR4 as AWS documents it for the parent's instance ID, the same
	// construction as PCR3: SHA-384 of 48 zero bytes followed by the ID's
	// bytes, computed here with crypto/sha512 alone.
	pcr4 := sha512.Sum384(append(make([]byte, 48), "i-1234567890abcdef0"...))
	if got := PCR4("i-1234567890abcdef0"); !bytes.Equal(got, pcr4[:]) {
		t.Errorf("PCR4: got %x, want %x", got, pcr4)
	}
	pr, err := ReaderPCR(strings.NewReader("hello"))
	if err != nil || !bytes.Equal(pr, ContentPCR([]byte("hello"))) {
		t.Errorf("ReaderPCR: got %x, %v, want %x", pr, err, ContentPCR([]byte("hello")))
	}
}

func TestReproducible(t *testing.T) {
	in := newInputs(3, 2)
	a, _ := mustBuild(t, in.options())
	b, _ := mustBuild(t, in.options())
	if !bytes.Equal(a, b) {
		t.Errorf("two builds with the same BuildTime differ")
	}
	md, err := mustRead(t, a).Metadata()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := md.BuildMetadata.BuildTime, "2025-06-07T08:09:10+00:00"; got != want {
		t.Errorf("BuildTime: got %q, want %q", got, want)
	}
}

func TestSigned(t *testing.T) {
	key, cert := testSigner(t)
	in := newInputs(4, 2)
	opts := in.options()
	opts.Signer, opts.Certificate = key, cert
	b, built := mustBuild(t, opts)
	f := mustRead(t, b)
	if !f.IsSigned() {
		t.Fatalf("IsSigned: got false, want true")
	}
	want0, _, _ := independentPCRs(in.kernel, []byte(in.cmdline), in.ramdisks)
	want8 := independentPCRs8(cert.Raw)
	d, err := f.Describe()
	if err != nil {
		t.Fatalf("Describe: %v", err)
	}
	if !d.IsSigned || d.SignatureCheck == nil || !*d.SignatureCheck || !d.CheckCRC {
		t.Errorf("Describe: got IsSigned %v SignatureCheck %v CheckCRC %v, want true true true", d.IsSigned, d.SignatureCheck, d.CheckCRC)
	}
	if !bytes.Equal(d.Measurements.PCR8, want8) || !bytes.Equal(built.PCR8, want8) {
		t.Errorf("PCR8: got %x / %x, want %x", d.Measurements.PCR8, built.PCR8, want8)
	}
	if !bytes.Equal(d.Measurements.PCR0, want0) {
		t.Errorf("PCR0 of signed image: got %x, want %x", d.Measurements.PCR0, want0)
	}
	if err := f.Verify(); err != nil {
		t.Errorf("Verify: %v", err)
	}
	ci := d.SigningCertificate
	if ci.Algorithm != "ecdsa-with-SHA384" || ci.IssuerName["commonName"] != "nitrovm test signer" ||
		ci.NotBefore != "Jan  2 03:04:05 2024 GMT" || !strings.Contains(ci.Signature, ":") {
		t.Errorf("SigningCertificate: got %+v", ci)
	}
	// The signature section is serde's encoding: [{"signing_certificate":
	// [u8...], "signature": [u8...]}] and the payload {"register_index": 0,
	// "register_value": [u8 x 48]}.
	sig, err := f.Signature()
	if err != nil {
		t.Fatal(err)
	}
	sb, _ := f.readSection(f.sig, SignatureMaxBytes)
	if !bytes.HasPrefix(sb, append([]byte{0x81, 0xa2, 0x73}, "signing_certificate"...)) {
		t.Errorf("signature section starts %x, want 81 a2 73 \"signing_certificate\"", sb[:24])
	}
	if sb[22] != 0x99 { // array, 2-byte length: a PEM certificate is > 255 bytes
		t.Errorf("signing_certificate: got CBOR major byte %#x, want 0x99 (array)", sb[22])
	}
	payload, _ := signaturePayload(0, want0)
	wantPayload := append([]byte{0xa2, 0x6e}, "register_index"...)
	wantPayload = append(wantPayload, 0x00, 0x6e)
	wantPayload = append(wantPayload, "register_value"...)
	wantPayload = append(wantPayload, 0x98, 48)
	for _, c := range want0 {
		if c >= 24 {
			wantPayload = append(wantPayload, 0x18)
		}
		wantPayload = append(wantPayload, c)
	}
	if !bytes.Equal(payload, wantPayload) {
		t.Errorf("payload: got %x, want %x", payload, wantPayload)
	}
	if !bytes.HasPrefix(sig.COSESign1, []byte{0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0}) {
		t.Errorf("COSE_Sign1: got prefix %x, want 84 44 a1 01 38 22 a0 (untagged, ES384, no unprotected headers)", sig.COSESign1[:7])
	}
	if err := sig.CheckPCR0(make([]byte, 48)); err == nil {
		t.Errorf("CheckPCR0(wrong PCR0): got nil, want error")
	}
}

func independentPCRs8(der []byte) []byte {
	h := sha512.Sum384(der)
	e := sha512.Sum384(append(make([]byte, 48), h[:]...))
	return e[:]
}

func TestBuildErrors(t *testing.T) {
	key, cert := testSigner(t)
	in := newInputs(5, 1)
	tests := []struct {
		name string
		mod  func(*BuildOptions)
		want string
	}{
		{"no kernel", func(o *BuildOptions) { o.Kernel = nil }, "no kernel"},
		{"no ramdisk", func(o *BuildOptions) { o.Ramdisks = nil }, "no ramdisk"},
		{"NUL in cmdline", func(o *BuildOptions) { o.Cmdline = "a\x00b" }, "NUL"},
		{"key without cert", func(o *BuildOptions) { o.Signer = key }, "certificate"},
		{"too many ramdisks", func(o *BuildOptions) {
			for range 29 {
				o.Ramdisks = append(o.Ramdisks, bytes.NewReader(nil))
			}
		}, "more than the 32"},
		{"bad custom metadata", func(o *BuildOptions) { o.CustomMetadata = json.RawMessage("{") }, "not valid JSON"},
		{"mismatched key", func(o *BuildOptions) {
			other, _ := testSigner(t)
			o.Signer, o.Certificate = other, cert
		}, "does not match"},
		{"short kernel config", func(o *BuildOptions) { o.KernelConfig = strings.NewReader("x\n") }, "fewer than 3 lines"},
	}
	for _, tt := range tests {
		opts := in.options()
		tt.mod(&opts)
		_, err := Build(io.Discard, opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestKernelConfigAndArch(t *testing.T) {
	in := newInputs(6, 1)
	opts := in.options()
	opts.KernelConfig = strings.NewReader("#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86_64 4.14.177-104.253.amzn2.x86_64 Kernel Configuration\n")
	opts.Arch = ArchARM64
	opts.CustomMetadata = json.RawMessage(`{"b":1,"a":"<x>"}`)
	b, _ := mustBuild(t, opts)
	f := mustRead(t, b)
	if f.Arch() != ArchARM64 || f.Arch().String() != "aarch64" {
		t.Errorf("Arch: got %v, want aarch64", f.Arch())
	}
	d, err := f.Describe()
	if err != nil {
		t.Fatal(err)
	}
	if d.Metadata.OperatingSystem != "Linux" || d.Metadata.KernelVersion != "4.14.177" {
		t.Errorf("kernel config: got %q %q, want Linux 4.14.177", d.Metadata.OperatingSystem, d.Metadata.KernelVersion)
	}
	out, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`{"EifVersion":4,"Measurements":{"HashAlgorithm":"Sha384 { ... }","PCR0":"`,
		`"IsSigned":false,"CheckCRC":true,"ImageName":"test-image","ImageVersion":"2.1","Metadata":{"BuildTime":"2025-06-07T08:09:10+00:00","BuildTool":"nitrovm","BuildToolVersion":"0.0.0","OperatingSystem":"Linux","KernelVersion":"4.14.177","DockerInfo":null,"a":"\u003cx\u003e","b":1}}`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("describe JSON: got %s, want it to contain %s", out, want)
		}
	}
}

func TestOlderVersions(t *testing.T) {
	in := newInputs(7, 2)
	raw := []rawSect{{SectionKernel, in.kernel}, {SectionCmdline, []byte(in.cmdline)}, {SectionRamdisk, in.ramdisks[0]}, {SectionRamdisk, in.ramdisks[1]}}
	want0, _, _ := independentPCRs(in.kernel, []byte(in.cmdline), in.ramdisks)
	for _, v := range []uint16{2, 3} {
		f := mustRead(t, rawEIF(v, 0, raw))
		d, err := f.Describe()
		if err != nil {
			t.Fatalf("v%d: Describe: %v", v, err)
		}
		if d.EifVersion != v || !d.CheckCRC || d.Metadata != nil || !bytes.Equal(d.Measurements.PCR0, want0) {
			t.Errorf("v%d: got version %d CRC %v metadata %v PCR0 %x", v, d.EifVersion, d.CheckCRC, d.Metadata, d.Measurements.PCR0)
		}
	}
}

// validImage is a small valid EIF for mutation tests: kernel, cmdline,
// metadata, ramdisk, ramdisk.
func validImage(t testing.TB) []byte {
	b, _ := mustBuild(t, newInputs(8, 2).options())
	return b
}

func TestMalformed(t *testing.T) {
	in := newInputs(9, 1)
	k, c, r := rawSect{SectionKernel, in.kernel}, rawSect{SectionCmdline, []byte(in.cmdline)}, rawSect{SectionRamdisk, in.ramdisks[0]}
	put16 := func(b []byte, off int, v uint16) []byte { binary.BigEndian.PutUint16(b[off:], v); return b }
	put64 := func(b []byte, off int, v uint64) []byte { binary.BigEndian.PutUint64(b[off:], v); return b }
	secOff := func(b []byte, i int) int { return int(binary.BigEndian.Uint64(b[28+8*i:])) }
	many := []rawSect{k, c}
	for range 31 {
		many = append(many, r)
	}
	tests := []struct {
		name    string
		img     func() []byte
		want    string
		section int // -1: header
	}{
		{"empty file", func() []byte { return nil }, "shorter than the 548-byte EIF header", -1},
		{"truncated header", func() []byte { return validImage(t)[:300] }, "shorter than the 548-byte", -1},
		{"bad magic", func() []byte { b := validImage(t); b[0] = 'X'; return b }, "bad magic", -1},
		{"version 1", func() []byte { return put16(validImage(t), 4, 1) }, "version 1 is not supported", -1},
		{"version 0", func() []byte { return put16(validImage(t), 4, 0) }, "unsupported EIF version 0", -1},
		{"version 5", func() []byte { return put16(validImage(t), 4, 5) }, "unsupported EIF version 5", -1},
		{"unknown flags", func() []byte { return put16(validImage(t), 6, 0x3) }, "unknown header flags 0x0003", -1},
		{"no sections", func() []byte { return put16(validImage(t), 26, 0) }, "no sections", -1},
		{"33 sections", func() []byte { return put16(validImage(t), 26, 33) }, "33 sections, more than the 32", -1},
		{"more than 32 sections", func() []byte { return rawEIF(4, 0, many) }, "33 sections", -1},
		{"truncated data", func() []byte { b := validImage(t); return b[:len(b)-10] }, "runs past the end of the file", 4},
		{"truncated in section header", func() []byte { b := validImage(t); return b[:secOff(b, 4)+5] }, "section header at", 4},
		{"offset past EOF", func() []byte { return put64(validImage(t), 28+8*2, 1<<40) }, "past the end of the file", 2},
		{"huge offset", func() []byte { return put64(validImage(t), 28+8*1, ^uint64(0)-3) }, "past the end of the file", 1},
		{"huge size", func() []byte { return put64(validImage(t), 28+256, ^uint64(0)) }, "runs past the end", 0},
		{"size mismatch", func() []byte {
			b := validImage(t)
			return put64(b, secOff(b, 1)+4, binary.BigEndian.Uint64(b[secOff(b, 1)+4:])+1)
		}, "section header says", 1},
		{"header size mismatch", func() []byte {
			b := validImage(t)
			return put64(b, 28+256+8*3, binary.BigEndian.Uint64(b[28+256+8*3:])-1)
		}, "ramdisk section header says 2317 bytes but the EIF header says 2316", 3},
		{"gap between sections", func() []byte { return put64(validImage(t), 28+8*1, uint64(548)) }, "contiguous", 1},
		{"trailing bytes", func() []byte { return append(validImage(t), 0, 0, 0) }, "3 trailing bytes", 4},
		{"invalid section type", func() []byte { b := validImage(t); return put16(b, secOff(b, 2), 9) }, "invalid section type 9", 2},
		{"zero section type", func() []byte { b := validImage(t); return put16(b, secOff(b, 2), 0) }, "invalid section type 0", 2},
		{"section flags", func() []byte { b := validImage(t); return put16(b, secOff(b, 2)+2, 1) }, "flags 0x0001", 2},
		{"0 kernels", func() []byte { return rawEIF(4, 0, []rawSect{c, r}) }, "no kernel section", -1},
		{"2 kernels", func() []byte { return rawEIF(4, 0, []rawSect{k, c, k, r}) }, "second kernel section", 2},
		{"0 cmdlines", func() []byte { return rawEIF(4, 0, []rawSect{k, r}) }, "no cmdline section", -1},
		{"2 cmdlines", func() []byte { return rawEIF(4, 0, []rawSect{k, c, r, c}) }, "second cmdline section", 3},
		{"no ramdisk", func() []byte { return rawEIF(4, 0, []rawSect{k, c}) }, "no ramdisk section", -1},
		{"signature in v2", func() []byte { return rawEIF(2, 0, []rawSect{k, c, r, {SectionSignature, []byte{0x80}}}) }, "signatures need version 3", 3},
		{"metadata in v3", func() []byte { return rawEIF(3, 0, []rawSect{k, c, {SectionMetadata, []byte("{}")}, r}) }, "metadata needs version 4", 2},
	}
	for _, tt := range tests {
		b := tt.img()
		_, err := NewReader(bytes.NewReader(b), int64(len(b)))
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Errorf("%s: got %v, want a *FormatError", tt.name, err)
			continue
		}
		if !strings.Contains(fe.Error(), tt.want) || fe.Section != tt.section || strings.Contains(fe.Error(), "\n") {
			t.Errorf("%s: got %q (section %d), want one line containing %q (section %d)", tt.name, fe.Error(), fe.Section, tt.want, tt.section)
		}
	}
}

func TestContentErrors(t *testing.T) {
	in := newInputs(10, 1)
	k, c, r := rawSect{SectionKernel, in.kernel}, rawSect{SectionCmdline, []byte(in.cmdline)}, rawSect{SectionRamdisk, in.ramdisks[0]}
	tests := []struct {
		name string
		img  func() []byte
		op   func(*File) error
		want string
	}{
		{"CRC mismatch", func() []byte { b := validImage(t); b[len(b)-1] ^= 1; return b },
			func(f *File) error { _, err := f.Measure(); return err }, "CRC-32 mismatch: header says"},
		{"CRC field wrong", func() []byte { b := validImage(t); b[545] ^= 0xff; return b },
			func(f *File) error { return f.Verify() }, "CRC-32 mismatch"},
		{"signature not CBOR", func() []byte { return rawEIF(4, 0, []rawSect{k, c, r, {SectionSignature, []byte{0xff}}}) },
			func(f *File) error { _, err := f.Measure(); return err }, "signature section is not a CBOR array"},
		{"empty signature array", func() []byte { return rawEIF(4, 0, []rawSect{k, c, r, {SectionSignature, []byte{0x80}}}) },
			func(f *File) error { _, err := f.Describe(); return err }, "holds no PCR signature"},
		{"signature cert not PEM", func() []byte {
			return rawEIF(4, 0, []rawSect{k, c, r, {SectionSignature, []byte{0x81, 0xa2, 0x73, 's', 'i', 'g', 'n', 'i', 'n', 'g', '_', 'c', 'e', 'r', 't', 'i', 'f', 'i', 'c', 'a', 't', 'e', 0x41, 'x', 0x69, 's', 'i', 'g', 'n', 'a', 't', 'u', 'r', 'e', 0x40}}})
		}, func(f *File) error { _, err := f.Measure(); return err }, "not a PEM CERTIFICATE"},
		{"metadata not JSON", func() []byte { return rawEIF(4, 0, []rawSect{k, c, {SectionMetadata, []byte("{")}, r}) },
			func(f *File) error { _, err := f.Describe(); return err }, "metadata section is not valid JSON"},
		{"cmdline too long", func() []byte { return rawEIF(4, 0, []rawSect{k, {SectionCmdline, make([]byte, CmdlineMaxBytes+1)}, r}) },
			func(f *File) error { _, err := f.Cmdline(); return err }, "cmdline section is 65537 bytes"},
		{"unsigned Signature()", func() []byte { return rawEIF(4, 0, []rawSect{k, c, r}) },
			func(f *File) error { _, err := f.Signature(); return err }, "not signed"},
	}
	for _, tt := range tests {
		f := mustRead(t, tt.img())
		err := tt.op(f)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: got %v, want one line containing %q", tt.name, err, tt.want)
		}
	}
	// A CRC mismatch still yields measurements, and Describe reports it.
	b := validImage(t)
	b[len(b)-1] ^= 1
	f := mustRead(t, b)
	m, err := f.Measure()
	if !errors.Is(err, ErrCRCMismatch) || m == nil {
		t.Errorf("Measure with bad CRC: got %v, %v, want measurements and ErrCRCMismatch", m, err)
	}
	if d, err := f.Describe(); err != nil || d.CheckCRC {
		t.Errorf("Describe with bad CRC: got CheckCRC %v, %v, want false, nil", d != nil && d.CheckCRC, err)
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.eif")
	if err := os.WriteFile(p, validImage(t), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if _, err := f.Measure(); err != nil {
		t.Errorf("Measure: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	for _, bad := range []string{filepath.Join(dir, "missing.eif"), dir} {
		if _, err := Open(bad); err == nil {
			t.Errorf("Open(%s): got nil error, want one", bad)
		}
	}
}

// TestUnusualOrder checks measurement in file order (nitro-cli's reader)
// when PCR1's input is not a prefix of PCR0's: cmdline after the ramdisks.
func TestUnusualOrder(t *testing.T) {
	in := newInputs(11, 3)
	k, c := in.kernel, []byte(in.cmdline)
	b := rawEIF(4, 0, []rawSect{{SectionKernel, k}, {SectionRamdisk, in.ramdisks[0]}, {SectionRamdisk, in.ramdisks[1]}, {SectionRamdisk, in.ramdisks[2]}, {SectionCmdline, c}})
	m, err := mustRead(t, b).Measure()
	if err != nil {
		t.Fatal(err)
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	want0 := ContentPCR(cat(k, in.ramdisks[0], in.ramdisks[1], in.ramdisks[2], c))
	want1 := ContentPCR(cat(k, in.ramdisks[0], c))
	want2 := ContentPCR(cat(in.ramdisks[1], in.ramdisks[2]))
	if !bytes.Equal(m.PCR0, want0) || !bytes.Equal(m.PCR1, want1) || !bytes.Equal(m.PCR2, want2) {
		t.Errorf("got %x %x %x, want %x %x %x", m.PCR0, m.PCR1, m.PCR2, want0, want1, want2)
	}
}

// TestLargeSections crosses the chunk size so that the pipeline recycles
// buffers and splits sections over several chunks.
func TestLargeSections(t *testing.T) {
	in := newInputs(12, 2)
	in.kernel = bytes.Repeat([]byte{1, 2, 3}, chunkSize)   // 3 chunks
	in.ramdisks[0] = bytes.Repeat([]byte{4, 5}, chunkSize) // 2 chunks
	in.ramdisks[1] = bytes.Repeat([]byte{6}, 5*chunkSize+17)
	b, built := mustBuild(t, in.options())
	m, err := mustRead(t, b).Measure()
	if err != nil {
		t.Fatal(err)
	}
	w0, w1, w2 := independentPCRs(in.kernel, []byte(in.cmdline), in.ramdisks)
	for _, got := range []*Measurements{m, built} {
		if !bytes.Equal(got.PCR0, w0) || !bytes.Equal(got.PCR1, w1) || !bytes.Equal(got.PCR2, w2) {
			t.Errorf("got %x %x %x, want %x %x %x", got.PCR0, got.PCR1, got.PCR2, w0, w1, w2)
		}
	}
}

// failingReaderAt fails every read that reaches past limit.
type failingReaderAt struct {
	r     io.ReaderAt
	limit int64
}

func (f failingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.limit {
		return 0, errors.New("disk on fire")
	}
	return f.r.ReadAt(p, off)
}

func TestIOErrors(t *testing.T) {
	b := validImage(t)
	tests := []struct {
		name  string
		limit int64
		op    func(*File) error
		want  string
	}{
		{"header", 100, nil, "read eif header: disk on fire"},
		{"section header", 555, nil, "read eif section 0 header: disk on fire"},
		{"measure", int64(len(b)) - 5, func(f *File) error { _, err := f.Measure(); return err }, "measure eif: read"},
		{"describe", int64(len(b)) - 5, func(f *File) error { _, err := f.Describe(); return err }, "disk on fire"},
	}
	for _, tt := range tests {
		r := failingReaderAt{bytes.NewReader(b), tt.limit}
		f, err := NewReader(r, int64(len(b)))
		if tt.op != nil {
			if err != nil {
				t.Fatalf("%s: NewReader: %v", tt.name, err)
			}
			err = tt.op(f)
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want error containing %q", tt.name, err, tt.want)
		}
	}
	_, err := Build(failingWriter{}, newInputs(13, 1).options())
	if err == nil || !strings.Contains(err.Error(), "write: disk full") {
		t.Errorf("Build to a failing writer: got %v, want write error", err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }
