package eif

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"hash/crc32"
	"math/big"
	"math/rand/v2"
	"testing"
	"time"
)

// rawSect is a section for rawEIF.
type rawSect struct {
	typ  SectionType
	data []byte
}

// rawEIF lays out an EIF by hand from REFERENCE §1, independently of Build:
// contiguous sections after the 548-byte header, CRC over everything but the
// CRC field.
func rawEIF(version, flags uint16, ss []rawSect) []byte {
	b := make([]byte, 548)
	copy(b, ".eif")
	binary.BigEndian.PutUint16(b[4:], version)
	binary.BigEndian.PutUint16(b[6:], flags)
	binary.BigEndian.PutUint64(b[8:], 1<<30)
	binary.BigEndian.PutUint64(b[16:], 2)
	binary.BigEndian.PutUint16(b[26:], uint16(len(ss)))
	for i, s := range ss {
		if i < 32 {
			binary.BigEndian.PutUint64(b[28+8*i:], uint64(len(b)))
			binary.BigEndian.PutUint64(b[28+256+8*i:], uint64(len(s.data)))
		}
		var sh [12]byte
		binary.BigEndian.PutUint16(sh[0:], uint16(s.typ))
		binary.BigEndian.PutUint64(sh[4:], uint64(len(s.data)))
		b = append(b, sh[:]...)
		b = append(b, s.data...)
	}
	fixCRC(b)
	return b
}

// fixCRC rewrites the header CRC of an EIF image after a mutation.
func fixCRC(b []byte) {
	crc := crc32.ChecksumIEEE(b[:544])
	crc = crc32.Update(crc, crc32.IEEETable, b[548:])
	binary.BigEndian.PutUint32(b[544:], crc)
}

// independentPCRs computes PCR0/1/2 straight from REFERENCE §2 with
// crypto/sha512 over concatenated byte slices.
func independentPCRs(kernel, cmdline []byte, ramdisks [][]byte) (pcr0, pcr1, pcr2 []byte) {
	extend := func(data []byte) []byte {
		s := sha512.Sum384(data)
		z := make([]byte, 48)
		e := sha512.Sum384(append(z, s[:]...))
		return e[:]
	}
	all := append(append([]byte{}, kernel...), cmdline...)
	boot := append(append([]byte{}, all...), ramdisks[0]...)
	var app []byte
	for i, r := range ramdisks {
		all = append(all, r...)
		if i > 0 {
			app = append(app, r...)
		}
	}
	return extend(all), extend(boot), extend(app)
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// testSigner returns a P-384 key and a self-signed certificate for it.
func testSigner(t testing.TB) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P384(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "nitrovm test signer", Organization: []string{"nitrovm"}, Country: []string{"US"}},
		NotBefore:    time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC),
		NotAfter:     time.Date(2044, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

// testInputs is a kernel, cmdline and ramdisks for Build.
type testInputs struct {
	kernel   []byte
	cmdline  string
	ramdisks [][]byte
}

func newInputs(seed uint64, nRamdisks int) testInputs {
	rng := rand.New(rand.NewPCG(seed, 99))
	in := testInputs{kernel: randBytes(rng, 3000+rng.IntN(3000)), cmdline: "reboot=k panic=30 pci=off console=ttyS0"}
	for range nRamdisks {
		in.ramdisks = append(in.ramdisks, randBytes(rng, 100+rng.IntN(5000)))
	}
	return in
}

func (in testInputs) options() BuildOptions {
	opts := BuildOptions{
		Kernel:    bytes.NewReader(in.kernel),
		Cmdline:   in.cmdline,
		Name:      "test-image",
		Version:   "2.1",
		BuildTime: time.Date(2025, 6, 7, 8, 9, 10, 0, time.UTC),
	}
	for _, r := range in.ramdisks {
		opts.Ramdisks = append(opts.Ramdisks, bytes.NewReader(r))
	}
	return opts
}

func mustBuild(t testing.TB, opts BuildOptions) ([]byte, *Measurements) {
	t.Helper()
	var buf bytes.Buffer
	m, err := Build(&buf, opts)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return buf.Bytes(), m
}

func mustRead(t testing.TB, b []byte) *File {
	t.Helper()
	f, err := NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	return f
}
