package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// writeTestImage writes a one-layer docker save archive with /bin/hello
// holding body.
func writeTestImage(t *testing.T, path, body string) {
	t.Helper()
	img, err := mutate.Config(testEnclaveImage(t, body), v1.Config{Cmd: []string{"/bin/hello"}, Env: []string{"PATH=/bin"}})
	if err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("hello:latest")
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		t.Fatal(err)
	}
}

type buildFixture struct {
	dir, kernel, init, img, img2 string
}

func newBuildFixture(t *testing.T) buildFixture {
	t.Helper()
	d := t.TempDir()
	f := buildFixture{dir: d, kernel: filepath.Join(d, "bzImage"), init: filepath.Join(d, "init"), img: filepath.Join(d, "hello.tar"), img2: filepath.Join(d, "hello2.tar")}
	os.WriteFile(f.kernel, bytes.Repeat([]byte("K"), 4096), 0o644)
	os.WriteFile(filepath.Join(d, "config"), []byte("#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 6.12.57 Kernel Configuration\n"), 0o644)
	os.WriteFile(f.init, []byte("\x7fELF test init"), 0o755)
	writeTestImage(t, f.img, "hello v1")
	writeTestImage(t, f.img2, "hello v2")
	return f
}

func runBuild(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), append([]string{"nitrovm", "build-enclave"}, args...), Env{
		Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] },
	})
	return code, out.String(), errb.String()
}

func measurements(t *testing.T, out string) map[string]string {
	t.Helper()
	var v struct{ Measurements map[string]string }
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	return v.Measurements
}

func TestBuildEnclaveReproducibleAndPCRs(t *testing.T) {
	f := newBuildFixture(t)
	noEnv := map[string]string{}
	build := func(img, out string, env map[string]string) map[string]string {
		code, stdout, stderr := runBuild(t, env, "--image-tar", img, "--kernel", f.kernel, "--init", f.init, "--output-file", out)
		if code != 0 {
			t.Fatalf("build-enclave: exit %d: %s", code, stderr)
		}
		if !strings.Contains(stderr, "Start building the Enclave Image...") || !strings.Contains(stderr, "Enclave Image successfully created.") {
			t.Errorf("stderr %q lacks nitro-cli's progress lines", stderr)
		}
		return measurements(t, stdout)
	}
	a, b, c := filepath.Join(f.dir, "a.eif"), filepath.Join(f.dir, "b.eif"), filepath.Join(f.dir, "c.eif")
	ma, mb := build(f.img, a, noEnv), build(f.img, b, noEnv)
	ea, _ := os.ReadFile(a)
	eb, _ := os.ReadFile(b)
	if !bytes.Equal(ea, eb) {
		t.Error("two builds of the same image differ")
	}
	if ma["PCR0"] != mb["PCR0"] {
		t.Errorf("PCR0: got %s, want %s", mb["PCR0"], ma["PCR0"])
	}
	if got, want := ma["HashAlgorithm"], "Sha384 { ... }"; got != want {
		t.Errorf("HashAlgorithm: got %q, want %q", got, want)
	}
	mc := build(f.img2, c, noEnv)
	if mc["PCR0"] == ma["PCR0"] || mc["PCR2"] == ma["PCR2"] {
		t.Errorf("changing a file kept PCR0 or PCR2: got %v, was %v", mc, ma)
	}
	if mc["PCR1"] != ma["PCR1"] {
		t.Errorf("changing a file changed PCR1: got %s, want %s", mc["PCR1"], ma["PCR1"])
	}
	// SOURCE_DATE_EPOCH changes the ramdisk mtimes, hence PCR1 and PCR2.
	md := build(f.img, filepath.Join(f.dir, "d.eif"), map[string]string{"SOURCE_DATE_EPOCH": "1700000000"})
	if md["PCR1"] == ma["PCR1"] {
		t.Error("SOURCE_DATE_EPOCH did not reach the boot ramdisk")
	}
}

func TestBuildEnclaveBlobs(t *testing.T) {
	f := newBuildFixture(t)
	blobs := filepath.Join(f.dir, "blobs")
	os.Mkdir(blobs, 0o755)
	os.WriteFile(filepath.Join(blobs, "bzImage"), bytes.Repeat([]byte("A"), 4096), 0o644)
	os.WriteFile(filepath.Join(blobs, "bzImage.config"), []byte("#\n#\n# Linux/x86_64 4.14.256-209.484.amzn2.x86_64 Kernel Configuration\n"), 0o644)
	os.WriteFile(filepath.Join(blobs, "cmdline"), []byte(DefaultEnclaveCmdline+"\n"), 0o644)
	os.WriteFile(filepath.Join(blobs, "init"), []byte("aws init"), 0o755)
	os.WriteFile(filepath.Join(blobs, "nsm.ko"), []byte("module"), 0o644)
	code, out1, stderr := runBuild(t, nil, "--image-tar", f.img, "--blobs", blobs, "--output-file", filepath.Join(f.dir, "1.eif"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	code, out2, stderr := runBuild(t, map[string]string{"NITRO_CLI_BLOBS": blobs}, "--image-tar", f.img, "--output-file", filepath.Join(f.dir, "2.eif"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if measurements(t, out1)["PCR0"] != measurements(t, out2)["PCR0"] {
		t.Error("--blobs and NITRO_CLI_BLOBS gave different images")
	}
	code, out3, stderr := runBuild(t, nil, "--image-tar", f.img, "--kernel", filepath.Join(blobs, "bzImage"), "--init", filepath.Join(blobs, "init"), "--output-file", filepath.Join(f.dir, "3.eif"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if measurements(t, out1)["PCR1"] == measurements(t, out3)["PCR1"] {
		t.Error("nsm.ko of the blobs is not in the boot ramdisk")
	}
}

func TestBuildEnclaveSigned(t *testing.T) {
	f := newBuildFixture(t)
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	kder, _ := x509.MarshalECPrivateKey(key)
	cert, kpath := filepath.Join(f.dir, "cert.pem"), filepath.Join(f.dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(kpath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	code, out, stderr := runBuild(t, nil, "--image-tar", f.img, "--kernel", f.kernel, "--init", f.init, "--output-file", filepath.Join(f.dir, "s.eif"), "--signing-certificate", cert, "--private-key", kpath)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if measurements(t, out)["PCR8"] == "" {
		t.Error("signed build has no PCR8")
	}
}

func TestBuildEnclaveErrors(t *testing.T) {
	f := newBuildFixture(t)
	out := filepath.Join(f.dir, "x.eif")
	junk := filepath.Join(f.dir, "junk")
	os.WriteFile(junk, []byte("not a tar at all, not at all"), 0o644)
	badKey := filepath.Join(f.dir, "bad.pem")
	os.WriteFile(badKey, []byte("nope"), 0o644)
	base := []string{"--kernel", f.kernel, "--init", f.init}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want int
	}{
		{"no output", nil, append([]string{"--image-tar", f.img}, base...), eMissingArgument},
		{"no image", nil, append([]string{"--output-file", out}, base...), eMissingArgument},
		{"docker dir", nil, append([]string{"--docker-dir", f.dir, "--output-file", out}, base...), eDockerImageBuild},
		{"pull without HOME or NITROVM_CACHE", nil, append([]string{"--docker-uri", "hello:latest", "--output-file", out}, base...), eDockerImagePull},
		{"bad image", nil, append([]string{"--image-tar", junk, "--output-file", out}, base...), eDockerImagePull},
		{"cert without key", nil, append([]string{"--image-tar", f.img, "--output-file", out, "--signing-certificate", badKey}, base...), eConflictingArgument},
		{"bad cert", nil, append([]string{"--image-tar", f.img, "--output-file", out, "--signing-certificate", badKey, "--private-key", badKey}, base...), eEIFBuilding},
		{"missing kernel", nil, []string{"--image-tar", f.img, "--output-file", out, "--init", f.init, "--kernel", junk + "-none"}, eFileOperation},
		{"no cached kernel", map[string]string{"NITROVM_CACHE": f.dir}, []string{"--image-tar", f.img, "--output-file", out, "--init", f.init}, eBlobsPathNotSet},
		{"missing init", nil, []string{"--image-tar", f.img, "--output-file", out, "--kernel", f.kernel, "--init", junk + "-none"}, eFileOperation},
		{"bad blobs", nil, append([]string{"--image-tar", f.img, "--output-file", out, "--blobs", junk + "-none"}, base...), eFileOperation},
		{"bad epoch", map[string]string{"SOURCE_DATE_EPOCH": "yesterday"}, append([]string{"--image-tar", f.img, "--output-file", out}, base...), eInvalidArgument},
		{"bad metadata", nil, append([]string{"--image-tar", f.img, "--output-file", out, "--metadata", junk}, base...), eEIFBuilding},
		{"output dir missing", nil, append([]string{"--image-tar", f.img, "--output-file", filepath.Join(junk+"-none", "x.eif")}, base...), eEIFBuilding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runBuild(t, tt.env, tt.args...)
			if code != tt.want {
				t.Errorf("got exit %d (%s), want %d", code, strings.TrimSpace(stderr), tt.want)
			}
		})
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed build left an output file")
	}
}

// testEnclaveImage returns a one-layer image running /bin/hello.
func testEnclaveImage(t *testing.T, body string) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "bin/hello", Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg})
	io.WriteString(tw, body)
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{Cmd: []string{"/bin/hello"}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestBuildEnclaveImageName(t *testing.T) {
	f := newBuildFixture(t)
	img, other := testEnclaveImage(t, "one"), testEnclaveImage(t, "two")
	dockerTar := func(file string, imgs map[name.Reference]v1.Image) string {
		p := filepath.Join(f.dir, file)
		if err := tarball.MultiRefWriteToFile(p, imgs); err != nil {
			t.Fatal(err)
		}
		return p
	}
	app, _ := name.NewTag("web/app:1.2")
	svc, _ := name.NewTag("svc:3")
	dg, _ := img.Digest()
	byDigest, _ := name.NewDigest("web/app@" + dg.String())
	tagged := dockerTar("file.tar", map[name.Reference]v1.Image{app: img})
	untagged := dockerTar("plain.tar", map[name.Reference]v1.Image{byDigest: img})
	two := dockerTar("two.tar", map[name.Reference]v1.Image{app: img, svc: other})
	oci := filepath.Join(f.dir, "oci-dir")
	lp, err := layout.Write(oci, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "svc:3"})); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		args     []string
		wantName string // ImageName; "" when the build fails
		wantTag  string // RepoTags entry, or a stderr substring on failure
	}{
		{"docker save tag", []string{"--image-tar", tagged}, "web/app", "web/app:1.2"},
		{"untagged falls back to file name", []string{"--image-tar", untagged}, "plain", "plain"},
		{"docker-uri wins", []string{"--image-tar", two, "--docker-uri", "svc:3"}, "svc", "svc:3"},
		{"docker-uri path uses archive tag", []string{"--docker-uri", tagged}, "web/app", "web/app:1.2"},
		{"name flag wins", []string{"--image-tar", tagged, "--name", "mine"}, "mine", "web/app:1.2"},
		{"oci ref name", []string{"--image-tar", oci}, "svc", "svc:3"},
		{"several images", []string{"--image-tar", two}, "", "name one with --docker-uri"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(f.dir, fmt.Sprintf("n%d.eif", i))
			args := append([]string{"--kernel", f.kernel, "--init", f.init, "--output-file", out}, tt.args...)
			code, _, stderr := runBuild(t, nil, args...)
			if tt.wantName == "" {
				if code != eDockerImagePull || !strings.Contains(stderr, tt.wantTag) {
					t.Errorf("got exit %v (%s), want %v mentioning %q", code, strings.TrimSpace(stderr), eDockerImagePull, tt.wantTag)
				}
				return
			}
			if code != 0 {
				t.Fatalf("build-enclave: got exit %v (%s), want 0", code, stderr)
			}
			code, stdout, stderr := runEIFCmd(t, nil, "describe-eif", "--eif-path", out)
			if code != 0 {
				t.Fatalf("describe-eif: got exit %v (%s), want 0", code, stderr)
			}
			var d struct {
				ImageName string
				Metadata  struct {
					DockerInfo struct{ RepoTags []string }
				}
			}
			if err := json.Unmarshal([]byte(stdout), &d); err != nil {
				t.Fatal(err)
			}
			if d.ImageName != tt.wantName {
				t.Errorf("ImageName: got %v, want %v", d.ImageName, tt.wantName)
			}
			if got := d.Metadata.DockerInfo.RepoTags; len(got) != 1 || got[0] != tt.wantTag {
				t.Errorf("RepoTags: got %v, want [%v]\n%s", got, tt.wantTag, stdout)
			}
		})
	}
}
