package eif

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"
)

var updateTestdata = flag.Bool("update", false, "rewrite eif/testdata/*.eif")

// TestTestdata regenerates (with -update) and checks the seed images in
// testdata: valid ones must measure and describe cleanly, corrupt ones
// ("bad-" prefix) must fail.
func TestTestdata(t *testing.T) {
	if *updateTestdata {
		writeTestdata(t)
	}
	files, _ := filepath.Glob("testdata/*.eif")
	if len(files) == 0 {
		t.Fatal("no testdata/*.eif (run go test -run TestTestdata -update)")
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		bad := filepath.Base(p)[:4] == "bad-"
		err = exercise(b)
		if bad && err == nil {
			t.Errorf("%s: got nil error, want one", p)
		}
		if !bad && err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func writeTestdata(t *testing.T) {
	key, cert := testSigner(t)
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join("testdata", name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	in := newInputs(20, 1)
	in.kernel, in.ramdisks[0] = in.kernel[:200], in.ramdisks[0][:100]
	one, _ := mustBuild(t, in.options())
	write("one-ramdisk.eif", one)
	in3 := newInputs(21, 3)
	in3.kernel = in3.kernel[:300]
	for i := range in3.ramdisks {
		in3.ramdisks[i] = in3.ramdisks[i][:50]
	}
	opts := in3.options()
	opts.Signer, opts.Certificate = key, cert
	opts.CustomMetadata = json.RawMessage(`{"team":"nitrovm","n":3}`)
	signed, _ := mustBuild(t, opts)
	write("signed-three-ramdisks.eif", signed)
	opts = in.options()
	opts.Arch = ArchARM64
	arm, _ := mustBuild(t, opts)
	write("arm64.eif", arm)
	write("v3-no-metadata.eif", rawEIF(3, 0, []rawSect{{SectionKernel, in.kernel}, {SectionCmdline, []byte(in.cmdline)}, {SectionRamdisk, in.ramdisks[0]}}))
	crc := bytes.Clone(one)
	crc[len(crc)-1] ^= 0x40
	write("bad-crc.eif", crc)
	write("bad-truncated.eif", one[:len(one)-7])
	mag := bytes.Clone(one)
	mag[1] = 'E'
	write("bad-magic.eif", mag)
	sig := bytes.Clone(signed)
	// Flip a byte of the COSE signature (r||s, at the end), choosing one
	// CBOR-encoded as 0x18 XX with XX >= 26 so the CBOR stays valid.
	i := len(sig) - 2
	for ; i > len(sig)-90 && !(sig[i-1] == 0x18 && sig[i] >= 26); i-- {
	}
	sig[i] ^= 0x01
	fixCRC(sig)
	write("bad-signature.eif", sig)
}

// exercise opens b as an EIF and calls every accessor, returning the first
// error (a bad signature counts as one).
func exercise(b []byte) error {
	f, err := NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return err
	}
	_, _, _, _, _ = f.Version(), f.Arch().String(), f.DefaultMemory(), f.DefaultCPUs(), f.Size()
	_, _, _ = f.Flags(), f.HeaderCRC(), f.Sections()
	if _, err := io.Copy(io.Discard, f.Kernel()); err != nil {
		return err
	}
	for _, r := range f.Ramdisks() {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return err
		}
	}
	_, cmdErr := f.Cmdline()
	_, metaErr := f.Metadata()
	_, sigErr := f.Signature()
	m, measErr := f.Measure()
	if m != nil {
		if _, err := json.Marshal(m); err != nil {
			return err
		}
	}
	d, descErr := f.Describe()
	if d != nil {
		if _, err := json.Marshal(d); err != nil {
			return err
		}
	}
	verErr := f.Verify()
	for _, err := range []error{cmdErr, metaErr, measErr, descErr, verErr} {
		if err != nil {
			return err
		}
	}
	if f.IsSigned() && sigErr != nil {
		return sigErr
	}
	return nil
}

// FuzzReader feeds arbitrary bytes to NewReader and every accessor: none may
// panic, and a file that parses must round-trip its measurements.
func FuzzReader(f *testing.F) {
	addTestdataSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<20 {
			return
		}
		_ = exercise(b)
	})
}

// addTestdataSeeds adds every testdata/*.eif to f's seed corpus.
func addTestdataSeeds(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.eif")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}
