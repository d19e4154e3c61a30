package cli

import (
	"archive/tar"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nitrovm/nitrovm/internal/testimage"
	"github.com/nitrovm/nitrovm/internal/testregistry"
)

// registryFixture is a loopback registry with token auth, Docker
// credentials for it in $DOCKER_CONFIG, and a build fixture.
type registryFixture struct {
	buildFixture
	reg       *testregistry.Server
	cache     string
	intercept func(http.ResponseWriter, *http.Request) bool
}

func newRegistryFixture(t *testing.T) *registryFixture {
	t.Helper()
	f := &registryFixture{buildFixture: newBuildFixture(t)}
	f.cache = filepath.Join(f.dir, "cache")
	reg, err := testregistry.Start("127.0.0.1:0", testregistry.Options{User: "u", Password: "p",
		Intercept: func(w http.ResponseWriter, r *http.Request) bool { return f.intercept != nil && f.intercept(w, r) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	f.reg = reg
	cfg := t.TempDir()
	js := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.Addr, base64.StdEncoding.EncodeToString([]byte("u:p")))
	if err := os.WriteFile(filepath.Join(cfg, "config.json"), []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", cfg) // authn.DefaultKeychain reads the process environment
	return f
}

func (f *registryFixture) env() map[string]string { return map[string]string{"NITROVM_CACHE": f.cache} }

func (f *registryFixture) build(t *testing.T, out string, args ...string) (int, string, string) {
	t.Helper()
	return runBuild(t, f.env(), append([]string{"--kernel", f.kernel, "--init", f.init, "--output-file", out}, args...)...)
}

func (f *registryFixture) pushIndex(t *testing.T, ref string, idx v1.ImageIndex) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx, remote.WithAuth(&authn.Basic{Username: "u", Password: "p"})); err != nil {
		t.Fatal(err)
	}
}

// helloIndex is the hello example for linux/amd64 with an arm64 twin.
func helloIndex(t *testing.T) (v1.ImageIndex, v1.Image) {
	t.Helper()
	img, err := testimage.Hello("/bin/busybox")
	if err != nil {
		t.Skipf("hello image needs Debian's busybox-static (scripts/deps.sh): %v", err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.Architecture = "arm64"
	arm, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	return idx, img
}

// ociLayoutTar writes idx as an OCI image layout tar (what `docker save`
// writes since Docker 25), its entry named ref.
func ociLayoutTar(t *testing.T, path, ref string, idx v1.ImageIndex) {
	t.Helper()
	dir := t.TempDir()
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{"io.containerd.image.name": ref})); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if err := tw.WriteHeader(&tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, Size: int64(len(b))}); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = os.WriteFile(path, buf.Bytes(), 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
}

type describedEIF struct {
	ImageName string
	Metadata  struct {
		DockerInfo struct {
			RepoTags, RepoDigests []string
			Architecture          string
		}
	}
}

func describe(t *testing.T, eif string) describedEIF {
	t.Helper()
	code, stdout, stderr := runEIFCmd(t, nil, "describe-eif", "--eif-path", eif)
	if code != 0 {
		t.Fatalf("describe-eif: exit %d: %s", code, stderr)
	}
	var d describedEIF
	if err := json.Unmarshal([]byte(stdout), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestBuildEnclaveFromRegistry pulls AWS's hello example from a loopback
// registry with token auth and checks: the EIF is byte-identical to one
// built from the same image saved as an OCI layout tar; DockerInfo has the
// index digest; a second build uses the cache; progress lines without a
// terminal, none with --quiet; --platform picks the arm64 twin.
func TestBuildEnclaveFromRegistry(t *testing.T) {
	f := newRegistryFixture(t)
	idx, _ := helloIndex(t)
	ref := f.reg.Addr + "/aws/hello:latest"
	f.pushIndex(t, ref, idx)
	id, _ := idx.Digest()

	pulled := filepath.Join(f.dir, "pulled.eif")
	code, stdout, stderr := f.build(t, pulled, "--docker-uri", ref)
	if code != 0 {
		t.Fatalf("build from the registry: exit %d: %s", code, stderr)
	}
	if n := strings.Count(stderr, "layer "); n != 2 || !strings.Contains(stderr, ": pulled (") {
		t.Errorf("stderr: got %q, want one 'layer …: pulled' line per layer (2)", stderr)
	}
	if !strings.HasSuffix(stderr, "Start building the Enclave Image...\nEnclave Image successfully created.\n") {
		t.Errorf("stderr: got %q, want nitro-cli's two lines last", stderr)
	}
	mPulled := measurements(t, stdout)

	layoutTar := filepath.Join(f.dir, "hello-oci.tar")
	ociLayoutTar(t, layoutTar, ref, idx)
	saved := filepath.Join(f.dir, "saved.eif")
	code, stdout, stderr = f.build(t, saved, "--image-tar", layoutTar, "--docker-uri", ref)
	if code != 0 {
		t.Fatalf("build from the layout tar: exit %d: %s", code, stderr)
	}
	a, _ := os.ReadFile(pulled)
	b, _ := os.ReadFile(saved)
	if !bytes.Equal(a, b) {
		t.Errorf("the pulled and the saved image gave different EIFs (PCR0 %s vs %s)", mPulled["PCR0"], measurements(t, stdout)["PCR0"])
	}
	d := describe(t, pulled)
	wantDigest := f.reg.Addr + "/aws/hello@" + id.String()
	if got := d.Metadata.DockerInfo.RepoDigests; len(got) != 1 || got[0] != wantDigest {
		t.Errorf("RepoDigests: got %q, want [%q]", got, wantDigest)
	}
	if got := d.Metadata.DockerInfo.RepoTags; len(got) != 1 || got[0] != ref {
		t.Errorf("RepoTags: got %q, want [%q]", got, ref)
	}

	// Again, from the cache, quietly: no registry request at all.
	f.intercept = func(w http.ResponseWriter, r *http.Request) bool {
		t.Errorf("registry request %s %s with a cached image and --pull missing", r.Method, r.URL.Path)
		w.WriteHeader(http.StatusInternalServerError)
		return true
	}
	again := filepath.Join(f.dir, "again.eif")
	code, _, stderr = f.build(t, again, "--docker-uri", ref, "--quiet")
	if code != 0 {
		t.Fatalf("build from the cache: exit %d: %s", code, stderr)
	}
	if stderr != "Start building the Enclave Image...\nEnclave Image successfully created.\n" {
		t.Errorf("--quiet stderr: got %q", stderr)
	}
	if c, _ := os.ReadFile(again); !bytes.Equal(a, c) {
		t.Error("the cached image gave a different EIF")
	}
	f.intercept = nil

	arm := filepath.Join(f.dir, "arm.eif")
	code, _, stderr = f.build(t, arm, "--docker-uri", ref, "--platform", "linux/arm64", "--quiet")
	if code != 0 {
		t.Fatalf("--platform linux/arm64: exit %d: %s", code, stderr)
	}
	if got := describe(t, arm).Metadata.DockerInfo.Architecture; got != "arm64" {
		t.Errorf("--platform linux/arm64: Architecture %q", got)
	}

	code, stdout, stderr = runEIFCmd(t, f.env(), "images", "prune")
	if code != 0 {
		t.Fatalf("images prune: exit %d: %s", code, stderr)
	}
	var pr struct {
		CacheDir   string
		FreedBytes int64
	}
	if err := json.Unmarshal([]byte(stdout), &pr); err != nil || pr.CacheDir != filepath.Join(f.cache, "images") || pr.FreedBytes < 1<<20 {
		t.Errorf("images prune: got %s (%v)", stdout, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(f.cache, "images")); len(ents) != 0 {
		t.Errorf("images prune left %d entries", len(ents))
	}
}

// TestBuildEnclavePullErrors checks each pull failure: exit code E50, one
// line naming the image and the cause, nothing at --output-file, nothing
// half-written in the cache.
func TestBuildEnclavePullErrors(t *testing.T) {
	f := newRegistryFixture(t)
	idx, img := helloIndex(t)
	ref := f.reg.Addr + "/aws/hello:latest"
	f.pushIndex(t, ref, idx)
	ls, _ := img.Layers()
	layer, _ := ls[0].Digest() // the busybox layer, 1 MB compressed
	size, _ := ls[0].Size()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	blob := func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+layer.String())
	}
	tests := []struct {
		name      string
		ref       string
		args      []string
		docker    string // DOCKER_CONFIG contents; "" keeps the fixture's
		intercept func(http.ResponseWriter, *http.Request) bool
		code      int
		want      string
	}{
		{name: "not found", ref: f.reg.Addr + "/aws/hello:nope", code: eDockerImagePull,
			want: "image " + f.reg.Addr + "/aws/hello:nope: not found at " + f.reg.Addr + ": MANIFEST_UNKNOWN: "},
		{name: "unauthorized", ref: ref, docker: `{}`, code: eDockerImagePull,
			want: "image " + ref + ": unauthorized at " + f.reg.Addr + " (log in with 'docker login'"},
		{name: "wrong platform", ref: ref, args: []string{"--platform", "linux/riscv64"}, code: eDockerImagePull,
			want: "image " + ref + ": no linux/riscv64 image (it has linux/amd64, linux/arm64); choose one with --platform"},
		{name: "digest mismatch", ref: ref, code: eDockerImagePull,
			intercept: func(w http.ResponseWriter, r *http.Request) bool {
				if !blob(r) {
					return false
				}
				w.Header().Set("Content-Length", fmt.Sprint(size))
				io.Copy(w, io.LimitReader(zeroReader{}, size))
				return true
			},
			want: "image " + ref + ": digest mismatch at " + f.reg.Addr + ": layer content of " + layer.String() + " hashes to sha256:"},
		{name: "interrupted", ref: ref, code: eDockerImagePull,
			intercept: func(w http.ResponseWriter, r *http.Request) bool {
				if !blob(r) {
					return false
				}
				w.Header().Set("Content-Length", fmt.Sprint(size))
				w.WriteHeader(http.StatusOK)
				io.Copy(w, io.LimitReader(zeroReader{}, size/3))
				w.(http.Flusher).Flush()
				if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
					c.Close()
				}
				return true
			},
			want: "image " + ref + ": download from " + f.reg.Addr + " interrupted: layer " + layer.String() + " after "},
		{name: "unreachable", ref: dead + "/x:1", code: eDockerImagePull,
			want: "image " + dead + "/x:1: registry " + dead + " unreachable: dial tcp " + dead + ": connect: connection refused"},
		{name: "never", ref: ref, args: []string{"--pull", "never"}, code: eDockerImagePull,
			want: "image " + ref + ": not in a local image store nor in nitrovm's cache, and --pull never"},
		{name: "bad pull policy", ref: ref, args: []string{"--pull", "sometimes"}, code: eInvalidArgument,
			want: `--pull "sometimes": want always, missing or never`},
		{name: "bad reference", ref: "Bad/Name:x", code: eInvalidArgument,
			want: "image Bad/Name:x: invalid reference: "},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.docker != "" {
				cfg := t.TempDir()
				os.WriteFile(filepath.Join(cfg, "config.json"), []byte(tt.docker), 0o600)
				t.Setenv("DOCKER_CONFIG", cfg)
			}
			f.intercept = tt.intercept
			defer func() { f.intercept = nil }()
			out := filepath.Join(f.dir, fmt.Sprintf("e%d.eif", i))
			code, stdout, stderr := f.build(t, out, append([]string{"--docker-uri", tt.ref}, tt.args...)...)
			if code != tt.code {
				t.Errorf("got exit %d, want %d (%s)", code, tt.code, stderr)
			}
			// Progress lines of the layers that did arrive, then the error.
			wantLine := fmt.Sprintf("[ E%02d ] %s", tt.code, tt.want)
			lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
			for _, l := range lines[:len(lines)-1] {
				if !strings.HasPrefix(l, "layer ") {
					t.Errorf("stderr line %q before the error", l)
				}
			}
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, wantLine) {
				t.Errorf("error line:\n got %q\nwant a line starting %q", last, wantLine)
			}
			if stdout != "" {
				t.Errorf("stdout: got %q, want nothing", stdout)
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("a failed pull left a file at --output-file")
			}
			if leftovers, _ := filepath.Glob(filepath.Join(f.dir, ".e*.eif.tmp-*")); len(leftovers) != 0 {
				t.Errorf("temporary outputs left: %q", leftovers)
			}
			blobs, _ := filepath.Glob(filepath.Join(f.cache, "images", "blobs", "sha256", "*"))
			for _, b := range blobs {
				if strings.HasSuffix(b, layer.Hex) || strings.Contains(filepath.Base(b), ".tmp-") {
					t.Errorf("cache holds %s after a failed pull", filepath.Base(b))
				}
			}
		})
	}
}

type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// TestBuildEnclaveFromDocker takes the image from a local Docker (a fake
// docker CLI on PATH that answers image inspect and save) with RepoDigests
// as the daemon reports them, and goes to the registry with --pull always.
func TestBuildEnclaveFromDocker(t *testing.T) {
	f := newRegistryFixture(t)
	img := testEnclaveImage(t, "from docker")
	saved := filepath.Join(f.dir, "docker-saved.tar")
	tag, _ := name.NewTag("hello:latest")
	if err := tarball.WriteToFile(saved, tag, img); err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	script := `#!/bin/sh
case "$1 $2" in
"image inspect") [ "$5" = hello ] || exit 1; echo '["docker.io/library/hello@sha256:` + strings.Repeat("0", 64) + `"]' ;;
"save -o") cp ` + saved + ` "$3" ;;
*) exit 2 ;;
esac
`
	if err := os.WriteFile(filepath.Join(bin, "docker"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	env := f.env()
	env["PATH"] = bin + ":/usr/bin:/bin"
	out := filepath.Join(f.dir, "docker.eif")
	code, _, stderr := runBuild(t, env, "--kernel", f.kernel, "--init", f.init, "--output-file", out, "--docker-uri", "hello")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	d := describe(t, out)
	if got := d.Metadata.DockerInfo.RepoDigests; len(got) != 1 || got[0] != "hello@sha256:"+strings.Repeat("0", 64) {
		t.Errorf("RepoDigests: got %q", got)
	}
	if got := d.Metadata.DockerInfo.RepoTags; len(got) != 1 || got[0] != "hello:latest" {
		t.Errorf("RepoTags: got %q", got)
	}
	// --pull always skips Docker: hello is Docker Hub's library/hello,
	// which the loopback-only test cannot reach; the error says so.
	code, _, stderr = runBuild(t, env, "--kernel", f.kernel, "--init", f.init, "--output-file", out+"2", "--docker-uri", f.reg.Addr+"/none:1", "--pull", "always")
	if code != eDockerImagePull || !strings.Contains(stderr, "not found") {
		t.Errorf("--pull always: got exit %d (%s), want E50 not found", code, stderr)
	}
}
