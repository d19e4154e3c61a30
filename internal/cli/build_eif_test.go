package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nitrovm/nitrovm/eif"
)

// runEIFCmd runs nitrovm with args and the given environment variables.
func runEIFCmd(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), append([]string{"nitrovm"}, args...), Env{
		Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string { return env[k] },
	})
	return code, out.String(), errb.String()
}

// eifInputs writes a kernel and n ramdisks into dir and returns their paths
// and contents.
func eifInputs(t *testing.T, dir string, n int) (kernel string, ramdisks []string, kb []byte, rbs [][]byte) {
	t.Helper()
	kb = bytes.Repeat([]byte("kernel!"), 500)
	kernel = filepath.Join(dir, "bzImage")
	if err := os.WriteFile(kernel, kb, 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		rb := bytes.Repeat([]byte{byte(i), byte(3 * i)}, 700+i*13)
		p := filepath.Join(dir, "rd"+string(rune('0'+i))+".cpio")
		if err := os.WriteFile(p, rb, 0o644); err != nil {
			t.Fatal(err)
		}
		ramdisks, rbs = append(ramdisks, p), append(rbs, rb)
	}
	return kernel, ramdisks, kb, rbs
}

// buildTestEIF builds an unsigned EIF of a kernel and n ramdisks in dir,
// named name, with build-eif, and returns its path.
func buildTestEIF(t *testing.T, dir string, n int, name string) string {
	t.Helper()
	kernel, ramdisks, _, _ := eifInputs(t, dir, n)
	out := filepath.Join(dir, name)
	if code, _, stderr := runEIFCmd(t, nil, buildArgs(kernel, ramdisks, out)...); code != 0 {
		t.Fatalf("build-eif: exit %d: %s", code, stderr)
	}
	return out
}

// refPCR is extend(SHA384(data)), written from REFERENCE §2.
func refPCR(data []byte) string {
	s := sha512.Sum384(data)
	e := sha512.Sum384(append(make([]byte, 48), s[:]...))
	return hex.EncodeToString(e[:])
}

type measurementsJSON struct {
	HashAlgorithm, PCR0, PCR1, PCR2, PCR8 string
}

func buildArgs(kernel string, ramdisks []string, out string, extra ...string) []string {
	args := []string{"build-eif", "--kernel", kernel, "--cmdline", "console=ttyS0 reboot=k", "--output", out}
	for _, r := range ramdisks {
		args = append(args, "--ramdisk", r)
	}
	return append(args, extra...)
}

func TestBuildDescribeRoundTrip(t *testing.T) {
	for _, n := range []int{1, 2, 5} {
		dir := t.TempDir()
		kernel, ramdisks, kb, rbs := eifInputs(t, dir, n)
		out := filepath.Join(dir, "image.eif")
		code, stdout, stderr := runEIFCmd(t, map[string]string{"SOURCE_DATE_EPOCH": "1700000000"}, buildArgs(kernel, ramdisks, out)...)
		if code != 0 {
			t.Fatalf("%d ramdisks: build-eif: got exit %d (%s), want 0", n, code, stderr)
		}
		var built struct{ Measurements measurementsJSON }
		if err := json.Unmarshal([]byte(stdout), &built); err != nil {
			t.Fatalf("build-eif output %q: %v", stdout, err)
		}
		all := append(append([]byte{}, kb...), "console=ttyS0 reboot=k"...)
		boot := append(append([]byte{}, all...), rbs[0]...)
		var app []byte
		for i, r := range rbs {
			all = append(all, r...)
			if i > 0 {
				app = append(app, r...)
			}
		}
		want := measurementsJSON{HashAlgorithm: "Sha384 { ... }", PCR0: refPCR(all), PCR1: refPCR(boot), PCR2: refPCR(app)}
		if built.Measurements != want {
			t.Errorf("%d ramdisks: build-eif measurements: got %+v, want %+v", n, built.Measurements, want)
		}
		code, stdout, stderr = runEIFCmd(t, nil, "describe-eif", "--eif-path", out)
		if code != 0 {
			t.Fatalf("describe-eif: got exit %d (%s), want 0", code, stderr)
		}
		var d struct {
			EifVersion   int
			Measurements measurementsJSON
			IsSigned     bool
			CheckCRC     bool
			ImageName    string
			ImageVersion string
			Metadata     map[string]any
		}
		if err := json.Unmarshal([]byte(stdout), &d); err != nil {
			t.Fatal(err)
		}
		if d.Measurements != want || d.EifVersion != 4 || d.IsSigned || !d.CheckCRC || d.ImageName != "bzImage" || d.ImageVersion != "1.0" {
			t.Errorf("%d ramdisks: describe-eif: got %+v", n, d)
		}
		if got := d.Metadata["BuildTime"]; got != "2023-11-14T22:13:20+00:00" {
			t.Errorf("BuildTime: got %v, want 2023-11-14T22:13:20+00:00", got)
		}
		// Field order is nitro-cli's.
		order := []string{`"EifVersion"`, `"Measurements"`, `"HashAlgorithm"`, `"PCR0"`, `"PCR1"`, `"PCR2"`, `"IsSigned"`, `"CheckCRC"`, `"ImageName"`, `"ImageVersion"`, `"Metadata"`, `"BuildTime"`, `"BuildTool"`, `"BuildToolVersion"`, `"OperatingSystem"`, `"KernelVersion"`, `"DockerInfo"`}
		last := -1
		for _, k := range order {
			i := strings.Index(stdout, k)
			if i <= last {
				t.Errorf("describe-eif: %s at %d, want after %d:\n%s", k, i, last, stdout)
			}
			last = i
		}
		// pcr --input agrees with the reference for a ramdisk.
		code, stdout, _ = runEIFCmd(t, nil, "pcr", "--input", ramdisks[0])
		if code != 0 || !strings.Contains(stdout, `"PCR": "`+refPCR(rbs[0])+`"`) {
			t.Errorf("pcr --input: got %d %s, want PCR %s", code, stdout, refPCR(rbs[0]))
		}
	}
}

func TestBuildReproducible(t *testing.T) {
	dir := t.TempDir()
	kernel, ramdisks, _, _ := eifInputs(t, dir, 2)
	a, b := filepath.Join(dir, "a.eif"), filepath.Join(dir, "b.eif")
	env := map[string]string{"SOURCE_DATE_EPOCH": "1700000000"}
	for _, out := range []string{a, b} {
		if code, _, stderr := runEIFCmd(t, env, buildArgs(kernel, ramdisks, out, "--name", "app", "--version", "3")...); code != 0 {
			t.Fatalf("build-eif: exit %d: %s", code, stderr)
		}
	}
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if !bytes.Equal(ab, bb) {
		t.Errorf("two builds with SOURCE_DATE_EPOCH differ")
	}
}

// writeSigner writes a P-384 key (SEC 1 PEM) and a self-signed certificate.
func writeSigner(t *testing.T, dir string) (keyPath, certPath string, certDER []byte) {
	t.Helper()
	return writeSignerValid(t, dir, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
}

// writeSignerValid writes a P-384 key and a self-signed certificate valid
// from notBefore to notAfter into dir as key.pem and cert.pem.
func writeSignerValid(t *testing.T, dir string, notBefore, notAfter time.Time) (keyPath, certPath string, certDER []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "signer", Organization: []string{"nitrovm tests"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
	}
	certDER, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	keyPath, certPath = filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem")
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}), 0o644)
	return keyPath, certPath, certDER
}

func TestBuildSigned(t *testing.T) {
	dir := t.TempDir()
	kernel, ramdisks, _, _ := eifInputs(t, dir, 2)
	keyPath, certPath, der := writeSigner(t, dir)
	meta := filepath.Join(dir, "meta.json")
	os.WriteFile(meta, []byte(`{"owner":"team-a","build":7}`), 0o644)
	out := filepath.Join(dir, "signed.eif")
	code, stdout, stderr := runEIFCmd(t, nil, buildArgs(kernel, ramdisks, out, "--signing-certificate", certPath, "--private-key", keyPath, "--metadata", meta)...)
	if code != 0 {
		t.Fatalf("build-eif signed: exit %d: %s", code, stderr)
	}
	var built struct{ Measurements measurementsJSON }
	json.Unmarshal([]byte(stdout), &built)
	if want := refPCR(der); built.Measurements.PCR8 != want {
		t.Errorf("build-eif PCR8: got %s, want %s", built.Measurements.PCR8, want)
	}
	code, stdout, stderr = runEIFCmd(t, nil, "describe-eif", "--eif-path", out)
	if code != 0 {
		t.Fatalf("describe-eif signed: exit %d: %s", code, stderr)
	}
	var d struct {
		Measurements       measurementsJSON
		IsSigned           bool
		SignatureCheck     *bool
		SigningCertificate struct{ IssuerName map[string]string }
		Metadata           map[string]any
	}
	json.Unmarshal([]byte(stdout), &d)
	if !d.IsSigned || d.SignatureCheck == nil || !*d.SignatureCheck || d.Measurements.PCR8 != refPCR(der) || d.Measurements != built.Measurements {
		t.Errorf("describe-eif signed: got %s", stdout)
	}
	if d.SigningCertificate.IssuerName["organizationName"] != "nitrovm tests" || d.Metadata["owner"] != "team-a" {
		t.Errorf("describe-eif signed: issuer %v, metadata %v", d.SigningCertificate.IssuerName, d.Metadata)
	}
	code, stdout, _ = runEIFCmd(t, nil, "pcr", "--signing-certificate", certPath)
	if code != 0 || !strings.Contains(stdout, `"PCR8": "`+refPCR(der)+`"`) {
		t.Errorf("pcr --signing-certificate: got %d %s, want PCR8 %s", code, stdout, refPCR(der))
	}
	// A tampered signature is shown (SignatureCheck false) and fails with E35.
	b, _ := os.ReadFile(out)
	// The COSE signature (r||s) ends the file, each byte a CBOR integer;
	// flip one encoded as 0x18 XX with XX >= 26, so the CBOR stays valid.
	i := len(b) - 2
	for ; i > len(b)-90 && !(b[i-1] == 0x18 && b[i] >= 26); i-- {
	}
	b[i] ^= 1
	fixEIFCRC(b)
	os.WriteFile(out, b, 0o644)
	code, stdout, stderr = runEIFCmd(t, nil, "describe-eif", "--eif-path", out)
	if code != 35 || !strings.Contains(stdout, `"SignatureCheck": false`) || !strings.HasPrefix(stderr, "[ E35 ]") || !strings.Contains(stderr, "signature check failed") {
		t.Errorf("tampered signature: got exit %d, stdout %s, stderr %q", code, stdout, stderr)
	}
}

func TestBuildEIFErrors(t *testing.T) {
	dir := t.TempDir()
	kernel, ramdisks, _, _ := eifInputs(t, dir, 1)
	keyPath, certPath, _ := writeSigner(t, dir)
	out := filepath.Join(dir, "o.eif")
	bigMeta := filepath.Join(dir, "big.json")
	os.WriteFile(bigMeta, []byte(`{"x":"`+strings.Repeat("a", 5000)+`"}`), 0o644)
	badMeta := filepath.Join(dir, "bad.json")
	os.WriteFile(badMeta, []byte(`{`), 0o644)
	base := func(extra ...string) []string { return buildArgs(kernel, ramdisks, out, extra...) }
	tests := []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string
	}{
		{"no flags", []string{"build-eif"}, nil, 2, "missing required flag(s) --kernel, --cmdline, --output, --ramdisk"},
		{"no ramdisk", []string{"build-eif", "--kernel", kernel, "--cmdline", "x", "--output", out}, nil, 2, "--ramdisk"},
		{"missing kernel file", buildArgs(filepath.Join(dir, "nope"), ramdisks, out), nil, 48, "[ E48 ]"},
		{"missing ramdisk file", buildArgs(kernel, []string{filepath.Join(dir, "nope")}, out), nil, 48, "open ramdisk"},
		{"ramdisk is a directory", buildArgs(kernel, []string{dir}, out), nil, 48, "not a regular file"},
		{"cert without key", base("--signing-certificate", certPath), nil, 2, "go together"},
		{"bad key file", base("--signing-certificate", certPath, "--private-key", certPath), nil, 48, "no PEM"},
		{"bad cert file", base("--signing-certificate", keyPath, "--private-key", keyPath), nil, 48, "no PEM CERTIFICATE"},
		{"KMS key", base("--signing-certificate", certPath, "--private-key", "arn:aws:kms:us-east-1:123456789012:key/abc"), nil, 48, "KMS keys are not supported"},
		{"metadata too big", base("--metadata", bigMeta), nil, 48, "exceeds the limit of 4096 bytes"},
		{"metadata not JSON", base("--metadata", badMeta), nil, 48, "not valid JSON"},
		{"bad arch", base("--arch", "mips"), nil, 2, "unknown architecture"},
		{"bad algo", base("--algo", "sha256"), nil, 2, "only sha384"},
		{"bad build time", base("--build-time", "yesterday"), nil, 2, "not an RFC 3339 time"},
		{"bad SOURCE_DATE_EPOCH", base(), map[string]string{"SOURCE_DATE_EPOCH": "soon"}, 2, "SOURCE_DATE_EPOCH"},
		{"output dir missing", buildArgs(kernel, ramdisks, filepath.Join(dir, "no", "o.eif")), nil, 48, "create output"},
		{"unknown flag", base("--bogus"), nil, 2, "unknown flag"},
	}
	for _, tt := range tests {
		code, _, stderr := runEIFCmd(t, tt.env, tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%s: got exit %d, stderr %q, want exit %d and one line containing %q", tt.name, code, stderr, tt.code, tt.want)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("failed builds left %s behind: %v", out, err)
	}
}

// failingBlob is a kernel whose contents cannot be read.
type failingBlob struct{}

func (failingBlob) ReadAt([]byte, int64) (int, error) { return 0, errors.New("disk gone") }
func (failingBlob) Size() int64                       { return 4096 }

// TestWriteEIFLeavesNothingBehind checks that a build that fails keeps the
// file it would have replaced and leaves no temporary file beside it.
func TestWriteEIFLeavesNothingBehind(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    eif.BuildOptions
		path    func(dir string) string
		wantErr string
	}{
		{"kernel unreadable", eif.BuildOptions{Kernel: failingBlob{}, Ramdisks: []eif.Blob{bytes.NewReader([]byte("rd"))}},
			func(dir string) string { return filepath.Join(dir, "out.eif") }, "disk gone"},
		{"no ramdisk", eif.BuildOptions{Kernel: bytes.NewReader([]byte("kernel"))},
			func(dir string) string { return filepath.Join(dir, "out.eif") }, "ramdisk"},
		{"directory missing", eif.BuildOptions{Kernel: bytes.NewReader([]byte("kernel")), Ramdisks: []eif.Blob{bytes.NewReader([]byte("rd"))}},
			func(dir string) string { return filepath.Join(dir, "missing", "out.eif") }, "create output"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			old := filepath.Join(dir, "out.eif")
			if err := os.WriteFile(old, []byte("previous build"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := writeEIF(tc.path(dir), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("writeEIF error = %v, want one containing %q", err, tc.wantErr)
			}
			if b, err := os.ReadFile(old); err != nil || string(b) != "previous build" {
				t.Errorf("previous EIF = %q, %v; want it untouched", b, err)
			}
			ents, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(ents) != 1 {
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				t.Errorf("directory holds %v, want only out.eif", names)
			}
		})
	}
}
