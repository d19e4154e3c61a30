package eif

import (
	"bytes"
	"crypto/ecdsa"
	"errors"
	"strings"
	"testing"
	"time"
)

// mustSign signs b with a new test key and returns the copy, its
// measurements and the certificate's DER.
func mustSign(t *testing.T, b []byte) ([]byte, *Measurements, []byte) {
	t.Helper()
	key, cert := testSigner(t)
	var out bytes.Buffer
	m, err := mustRead(t, b).Sign(&out, key, cert)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return out.Bytes(), m, cert.Raw
}

// checkSigned checks that b is an intact EIF signed over its PCR0 by the
// certificate der, with measurements m and want's PCR0-2.
func checkSigned(t *testing.T, b []byte, m *Measurements, der []byte, want *Measurements) {
	t.Helper()
	f := mustRead(t, b)
	if err := f.Verify(); err != nil {
		t.Fatalf("Verify of the signed copy: %v", err)
	}
	got, err := f.Measure()
	if err != nil {
		t.Fatal(err)
	}
	w8 := independentPCRs8(der)
	if !bytes.Equal(got.PCR0, want.PCR0) || !bytes.Equal(got.PCR1, want.PCR1) || !bytes.Equal(got.PCR2, want.PCR2) {
		t.Errorf("PCR0-2 changed by signing: got %x %x %x, want %x %x %x", got.PCR0, got.PCR1, got.PCR2, want.PCR0, want.PCR1, want.PCR2)
	}
	if !bytes.Equal(got.PCR8, w8) || !bytes.Equal(m.PCR8, w8) {
		t.Errorf("PCR8: file %x, returned %x, want %x", got.PCR8, m.PCR8, w8)
	}
}

func TestSignAppendsThenReplaces(t *testing.T) {
	plain, want := mustBuild(t, newInputs(21, 2).options())
	signed, m, der := mustSign(t, plain)
	checkSigned(t, signed, m, der, want)
	f := mustRead(t, signed)
	ss := f.Sections()
	if n := len(mustRead(t, plain).Sections()); len(ss) != n+1 || ss[n].Type != SectionSignature {
		t.Fatalf("signed copy: %d sections, last %v; want %d, the last a signature", len(ss), ss[len(ss)-1].Type, n+1)
	}
	// Every byte of the unsigned file but the header's table and CRC is
	// still there, in place.
	if !bytes.Equal(signed[offChecksum+4:len(plain)], plain[offChecksum+4:]) || !bytes.Equal(signed[:offNumSect], plain[:offNumSect]) {
		t.Errorf("signing changed bytes of the unsigned file")
	}

	// Signing again replaces the signature: same section count, the new
	// certificate's PCR8, and the old signature is gone.
	again, m2, der2 := mustSign(t, signed)
	checkSigned(t, again, m2, der2, want)
	if n := len(mustRead(t, again).Sections()); n != len(ss) {
		t.Errorf("re-signed copy: %d sections, want %d", n, len(ss))
	}
	if bytes.Equal(der, der2) || bytes.Contains(again, signed[ss[len(ss)-1].Offset:]) {
		t.Errorf("re-signing kept the old signature")
	}
}

// TestSignReplacesInTheMiddle re-signs a file whose signature section is not
// the last: the sections after it move.
func TestSignReplacesInTheMiddle(t *testing.T) {
	in := newInputs(22, 2)
	signedBuild, _ := mustBuild(t, func() BuildOptions {
		o := in.options()
		o.Signer, o.Certificate = testSigner(t)
		return o
	}())
	sf := mustRead(t, signedBuild)
	sig, err := sf.readSection(sf.sig, SignatureMaxBytes)
	if err != nil {
		t.Fatal(err)
	}
	// A section of two PCR signatures (0x82: an array of two), twice as long
	// as the new one, so that the sections after it must move back.
	if sig[0] != 0x81 {
		t.Fatalf("signature section starts %#x, want 0x81 (an array of one)", sig[0])
	}
	long := append([]byte{0x82}, append(append([]byte{}, sig[1:]...), sig[1:]...)...)
	k, c := in.kernel, []byte(in.cmdline)
	b := rawEIF(4, 0, []rawSect{{SectionKernel, k}, {SectionCmdline, c}, {SectionRamdisk, in.ramdisks[0]}, {SectionSignature, long}, {SectionRamdisk, in.ramdisks[1]}})
	want, err := mustRead(t, b).Measure()
	if err != nil {
		t.Fatal(err)
	}
	out, m, der := mustSign(t, b)
	checkSigned(t, out, m, der, want)
	ss := mustRead(t, out).Sections()
	if len(ss) != 5 || ss[3].Type != SectionSignature || ss[4].Type != SectionRamdisk || len(out) >= len(b) {
		t.Errorf("got %d sections (%v at 3, %v at 4), %d bytes from %d; want the signature in place, shorter", len(ss), ss[3].Type, ss[4].Type, len(out), len(b))
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestSignErrors(t *testing.T) {
	in := newInputs(23, 1)
	raw := []rawSect{{SectionKernel, in.kernel}, {SectionCmdline, []byte(in.cmdline)}, {SectionRamdisk, in.ramdisks[0]}}
	key, cert := testSigner(t)
	otherKey, _ := testSigner(t)
	badCRC := rawEIF(4, 0, raw)
	badCRC[offChecksum] ^= 1
	full := append([]rawSect{}, raw...)
	for len(full) < MaxSections {
		full = append(full, rawSect{SectionRamdisk, []byte{1}})
	}
	for _, tc := range []struct {
		name string
		b    []byte
		key  *ecdsa.PrivateKey
		want string
	}{
		{"version 2", rawEIF(2, 0, raw), key, "version 2 file cannot hold a signature"},
		{"CRC", badCRC, key, "CRC-32 mismatch"},
		{"all sections used", rawEIF(4, 0, full), key, "already has the 32 sections"},
		{"key of another certificate", rawEIF(4, 0, raw), otherKey, "private key does not match the signing certificate"},
		{"write", rawEIF(4, 0, raw), key, "disk full"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mustRead(t, tc.b).Sign(failWriter{}, tc.key, cert)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Sign: got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// FuzzSign signs arbitrary input that NewReader accepts: Sign must not
// panic, and whatever it signs must read back as an intact EIF whose
// signature checks, with PCR0-2 and every section but the signature as
// they were.
func FuzzSign(f *testing.F) {
	addTestdataSeeds(f)
	key, cert := testSigner(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<20 {
			return
		}
		in, err := NewReader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		var out bytes.Buffer
		m, err := in.Sign(&out, key, cert)
		if err != nil {
			return
		}
		signed, err := NewReader(bytes.NewReader(out.Bytes()), int64(out.Len()))
		if err != nil {
			t.Fatalf("the signed copy does not parse: %v", err)
		}
		if err := signed.Verify(); err != nil {
			t.Fatalf("the signed copy does not verify: %v", err)
		}
		before, _ := in.Measure()
		if !bytes.Equal(m.PCR0, before.PCR0) || !bytes.Equal(m.PCR1, before.PCR1) || !bytes.Equal(m.PCR2, before.PCR2) {
			t.Fatalf("signing changed PCR0-2")
		}
		var kept, had int
		for _, s := range in.Sections() {
			if s.Type != SectionSignature {
				had++
			}
		}
		for _, s := range signed.Sections() {
			if s.Type != SectionSignature {
				kept++
			}
		}
		if kept != had || !signed.IsSigned() {
			t.Fatalf("sections other than the signature: %d before, %d after; signed %v", had, kept, signed.IsSigned())
		}
	})
}

func TestCheckForLaunch(t *testing.T) {
	in := newInputs(24, 1)
	o := in.options()
	o.Signer, o.Certificate = testSigner(t) // valid 2024-01-02 to 2044-01-02
	b, _ := mustBuild(t, o)
	sig, err := mustRead(t, b).Signature()
	if err != nil {
		t.Fatal(err)
	}
	tampered := *sig
	tampered.COSESign1 = bytes.Clone(sig.COSESign1)
	tampered.COSESign1[len(tampered.COSESign1)-1] ^= 1
	for _, tc := range []struct {
		name string
		sig  *Signature
		at   time.Time
		want string
	}{
		{"valid", sig, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), ""},
		{"before the certificate", sig, time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC), "valid from 2024-01-02T03:04:05Z"},
		{"expired certificate", sig, time.Date(2045, 1, 1, 0, 0, 0, 0, time.UTC), "to 2044-01-02T03:04:05Z, not at 2045-01-01"},
		{"tampered", &tampered, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), "does not verify"},
	} {
		err := tc.sig.CheckForLaunch(tc.at)
		if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}
