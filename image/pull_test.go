package image

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nitrovm/nitrovm/internal/testregistry"
)

const (
	testUser     = "nitro"
	testPassword = "s3cret"
)

// platformImage is a one-layer image for os/arch whose file says which.
func platformImage(t *testing.T, arch string) v1.Image {
	t.Helper()
	img := testImage(t, helloConfig, []tf{{name: "bin/hello", body: "hello for " + arch + strings.Repeat(".", 4096), mode: 0o755}})
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// multiArch is an index of linux/amd64 and linux/arm64 images.
func multiArch(t *testing.T) (v1.ImageIndex, v1.Image, v1.Image) {
	t.Helper()
	amd, arm := platformImage(t, "amd64"), platformImage(t, "arm64")
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
	)
	return idx, amd, arm
}

// fixture is a loopback registry with token auth and Docker credentials
// for it in $DOCKER_CONFIG.
type fixture struct {
	reg   *testregistry.Server
	cache *Cache
	// intercept, if set, sees registry requests first.
	mu        sync.Mutex
	intercept func(w http.ResponseWriter, r *http.Request) bool
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{cache: &Cache{Dir: filepath.Join(t.TempDir(), "images")}}
	reg, err := testregistry.Start("127.0.0.1:0", testregistry.Options{User: testUser, Password: testPassword,
		Intercept: func(w http.ResponseWriter, r *http.Request) bool {
			f.mu.Lock()
			h := f.intercept
			f.mu.Unlock()
			return h != nil && h(w, r)
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	f.reg = reg
	f.dockerConfig(t, fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.Addr, base64.StdEncoding.EncodeToString([]byte(testUser+":"+testPassword))))
	return f
}

// dockerConfig points $DOCKER_CONFIG at a config.json holding js.
func (f *fixture) dockerConfig(t *testing.T, js string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
}

func (f *fixture) setIntercept(h func(w http.ResponseWriter, r *http.Request) bool) {
	f.mu.Lock()
	f.intercept = h
	f.mu.Unlock()
}

func (f *fixture) ref(repo string) string { return f.reg.Addr + "/" + repo }

func (f *fixture) auth() remote.Option {
	return remote.WithAuth(&authn.Basic{Username: testUser, Password: testPassword})
}

func (f *fixture) push(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	f.write(t, ref, func(r name.Reference) error { return remote.Write(r, img, f.auth()) })
}

func (f *fixture) pushIndex(t *testing.T, ref string, idx v1.ImageIndex) {
	t.Helper()
	f.write(t, ref, func(r name.Reference) error { return remote.WriteIndex(r, idx, f.auth()) })
}

// write parses ref and pushes to it with put.
func (f *fixture) write(t *testing.T, ref string, put func(name.Reference) error) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := put(r); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

func (f *fixture) resolve(ref string, mod func(*PullOptions)) (*Source, error) {
	o := PullOptions{Cache: f.cache}
	if mod != nil {
		mod(&o)
	}
	return Resolve(context.Background(), ref, o)
}

// wantKind checks that err is a *PullError of kind k naming image.
func wantKind(t *testing.T, err error, k ErrorKind, image string) *PullError {
	t.Helper()
	var pe *PullError
	if !errors.As(err, &pe) {
		t.Fatalf("got %v, want a *PullError", err)
	}
	if pe.Kind != k {
		t.Fatalf("got kind %d (%v), want %d", pe.Kind, err, k)
	}
	if !strings.HasPrefix(err.Error(), "image "+image+": ") || strings.Contains(err.Error(), "\n") {
		t.Errorf("got message %q, want one line starting %q", err, "image "+image+": ")
	}
	return pe
}

func sameImage(t *testing.T, got, want v1.Image) {
	t.Helper()
	g, err := got.Digest()
	if err != nil {
		t.Fatal(err)
	}
	w, err := want.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if g != w {
		t.Errorf("got image %s, want %s", g, w)
	}
}

// TestPullTokenAuth pulls through the token flow with credentials from
// $DOCKER_CONFIG (auths, then a credential helper) and is refused without.
func TestPullTokenAuth(t *testing.T) {
	f := newFixture(t)
	img := platformImage(t, "amd64")
	ref := f.ref("app/hello:1.0")
	f.push(t, ref, img)

	src, err := f.resolve(ref, nil)
	if err != nil {
		t.Fatalf("pull with auths: %v", err)
	}
	sameImage(t, src.Image, img)
	d, _ := img.Digest()
	if got, want := src.RepoDigests, []string{f.ref("app/hello") + "@" + d.String()}; !slices.Equal(got, want) {
		t.Errorf("RepoDigests: got %q, want %q", got, want)
	}
	if got, want := src.RepoTags, []string{ref}; !slices.Equal(got, want) {
		t.Errorf("RepoTags: got %q, want %q", got, want)
	}
	if src.From != "registry" {
		t.Errorf("From: got %q, want registry", src.From)
	}

	// A credential helper, as docker-credential-ecr-login is used.
	bin := t.TempDir()
	helper := fmt.Sprintf("#!/bin/sh\nread server\nprintf '{\"ServerURL\":\"%%s\",\"Username\":\"%s\",\"Secret\":\"%s\"}' \"$server\"\n", testUser, testPassword)
	if err := os.WriteFile(filepath.Join(bin, "docker-credential-nitrovmtest"), []byte(helper), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	f.dockerConfig(t, fmt.Sprintf(`{"credHelpers":{%q:"nitrovmtest"}}`, f.reg.Addr))
	if _, err := f.resolve(ref, func(o *PullOptions) { o.Policy = PullAlways }); err != nil {
		t.Fatalf("pull with credHelpers: %v", err)
	}

	f.dockerConfig(t, `{}`)
	_, err = f.resolve(ref, func(o *PullOptions) { o.Policy = PullAlways })
	wantKind(t, err, KindUnauthorized, ref)
	f.dockerConfig(t, fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, f.reg.Addr, base64.StdEncoding.EncodeToString([]byte(testUser+":wrong"))))
	_, err = f.resolve(ref, func(o *PullOptions) { o.Policy = PullAlways })
	wantKind(t, err, KindUnauthorized, ref)
}

// TestPullMultiArch picks linux/amd64 from an index, --platform another
// one, and refuses a platform the index lacks.
func TestPullMultiArch(t *testing.T) {
	f := newFixture(t)
	idx, amd, arm := multiArch(t)
	ref := f.ref("multi:latest")
	f.pushIndex(t, ref, idx)
	id, _ := idx.Digest()

	src, err := f.resolve(ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	sameImage(t, src.Image, amd)
	if got, want := src.RepoDigests, []string{f.ref("multi") + "@" + id.String()}; !slices.Equal(got, want) {
		t.Errorf("RepoDigests: got %q, want the index digest %q", got, want)
	}
	src, err = f.resolve(ref, func(o *PullOptions) { o.Platform = "linux/arm64" })
	if err != nil {
		t.Fatal(err)
	}
	sameImage(t, src.Image, arm)

	_, err = f.resolve(ref, func(o *PullOptions) { o.Platform = "linux/s390x" })
	wantKind(t, err, KindPlatform, ref)
	if want := "no linux/s390x image (it has linux/amd64, linux/arm64/v8); choose one with --platform"; !strings.HasSuffix(err.Error(), want) {
		t.Errorf("got %q, want it to end %q", err, want)
	}

	// A single-platform image is refused only for an explicit --platform.
	single := f.ref("single:arm")
	f.push(t, single, arm)
	if _, err := f.resolve(single, nil); err != nil {
		t.Errorf("single arm64 image without --platform: %v", err)
	}
	_, err = f.resolve(single, func(o *PullOptions) { o.Platform = "linux/amd64"; o.Policy = PullAlways })
	wantKind(t, err, KindPlatform, single)

	_, err = f.resolve(ref, func(o *PullOptions) { o.Platform = "amd64" })
	wantKind(t, err, KindBadReference, ref)
}

// layerDigest is the digest of img's only layer.
func layerDigest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	ls, err := img.Layers()
	if err != nil || len(ls) != 1 {
		t.Fatalf("layers: %v, %d", err, len(ls))
	}
	d, err := ls[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func blobRequest(r *http.Request, d v1.Hash) bool {
	return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+d.String())
}

// wantNothingCached checks that a failed layer left no blob and no
// temporary file in the cache.
func wantNothingCached(t *testing.T, c *Cache, d v1.Hash) {
	t.Helper()
	if c.Has(d) {
		t.Errorf("layer %s is in the cache after a failed download", d)
	}
	if tmp := c.tempFiles(); len(tmp) != 0 {
		t.Errorf("temporary files left in the cache: %q", tmp)
	}
}

// TestPullDigestMismatch serves a layer whose bytes do not match its
// digest: refused, nothing cached.
func TestPullDigestMismatch(t *testing.T) {
	f := newFixture(t)
	img := platformImage(t, "amd64")
	ref := f.ref("bad/layer:1")
	f.push(t, ref, img)
	d := layerDigest(t, img)
	l, _ := img.LayerByDigest(d)
	rc, _ := l.Compressed()
	good, _ := io.ReadAll(rc)
	rc.Close()
	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 0xff
	f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if !blobRequest(r, d) {
			return false
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(bad)))
		w.Write(bad)
		return true
	})
	_, err := f.resolve(ref, nil)
	wantKind(t, err, KindDigestMismatch, ref)
	if !strings.Contains(err.Error(), d.String()) || !strings.Contains(err.Error(), "nothing was cached") {
		t.Errorf("got %q, want it to name layer %s and say nothing was cached", err, d)
	}
	wantNothingCached(t, f.cache, d)
}

// TestPullInterrupted closes the connection in the middle of a layer: a
// clean error, nothing cached; the next pull completes.
func TestPullInterrupted(t *testing.T) {
	f := newFixture(t)
	img := platformImage(t, "amd64")
	ref := f.ref("cut/layer:1")
	f.push(t, ref, img)
	d := layerDigest(t, img)
	l, _ := img.LayerByDigest(d)
	size, _ := l.Size()
	f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if !blobRequest(r, d) {
			return false
		}
		rc, _ := l.Compressed()
		defer rc.Close()
		w.Header().Set("Content-Length", fmt.Sprint(size))
		w.WriteHeader(http.StatusOK)
		io.CopyN(w, rc, size/2)
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return true
	})
	_, err := f.resolve(ref, nil)
	pe := wantKind(t, err, KindInterrupted, ref)
	if !strings.Contains(pe.Error(), "nothing was cached") {
		t.Errorf("got %q, want it to say nothing was cached", pe)
	}
	wantNothingCached(t, f.cache, d)

	f.setIntercept(nil)
	src, err := f.resolve(ref, nil)
	if err != nil {
		t.Fatalf("pull after the interruption: %v", err)
	}
	sameImage(t, src.Image, img)
	if !f.cache.Has(d) {
		t.Error("layer not cached after a complete pull")
	}
}

// TestPullPolicyAndCache checks --pull with the cache: missing and never
// use an earlier pull without the registry, always needs the registry, a
// corrupt cached layer is removed and pulled again, and prune empties it.
func TestPullPolicyAndCache(t *testing.T) {
	f := newFixture(t)
	img := platformImage(t, "amd64")
	ref := f.ref("cached:1")
	f.push(t, ref, img)
	var pulled []string
	prog := progressFunc(func(d v1.Hash, cached bool) { pulled = append(pulled, fmt.Sprintf("%s cached=%v", d, cached)) })
	if _, err := f.resolve(ref, func(o *PullOptions) { o.Progress = prog }); err != nil {
		t.Fatal(err)
	}
	d := layerDigest(t, img)
	if want := []string{d.String() + " cached=false"}; !slices.Equal(pulled, want) {
		t.Errorf("progress: got %q, want %q", pulled, want)
	}
	// Every registry request now fails (with a status go-containerregistry
	// does not retry, to keep the test short).
	f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		w.WriteHeader(http.StatusBadRequest)
		return true
	})
	for _, p := range []PullPolicy{PullMissing, PullNever} {
		src, err := f.resolve(ref, func(o *PullOptions) { o.Policy = p })
		if err != nil {
			t.Fatalf("--pull %s from the cache: %v", p, err)
		}
		if src.From != "cache" {
			t.Errorf("--pull %s: From %q, want cache", p, src.From)
		}
		sameImage(t, src.Image, img)
		if _, err := WriteUserRamdiskSize(src.Image); err != nil {
			t.Errorf("--pull %s: build from the cache: %v", p, err)
		}
	}
	if _, err := f.resolve(ref, func(o *PullOptions) { o.Policy = PullAlways }); err == nil {
		t.Error("--pull always succeeded with the registry failing")
	}
	_, err := f.resolve(f.ref("never:pulled"), func(o *PullOptions) { o.Policy = PullNever })
	wantKind(t, err, KindNotFound, f.ref("never:pulled"))

	// Corrupt the cached layer: it is not used, and pulled again.
	p, _ := f.cache.blobPath(d)
	if err := os.WriteFile(p, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.resolve(ref, func(o *PullOptions) { o.Policy = PullNever }); err == nil {
		t.Error("--pull never used a corrupt cached layer")
	}
	if f.cache.Has(d) {
		t.Error("corrupt layer still in the cache")
	}
	f.setIntercept(nil)
	if _, err := f.resolve(ref, nil); err != nil {
		t.Fatalf("pull again: %v", err)
	}
	if err := f.cache.Verify(d); err != nil {
		t.Errorf("layer after pulling again: %v", err)
	}

	freed, err := f.cache.Prune()
	if err != nil || freed == 0 {
		t.Fatalf("prune: freed %d, %v", freed, err)
	}
	if f.cache.Has(d) {
		t.Error("layer still cached after prune")
	}
}

// WriteUserRamdiskSize builds img's user ramdisk and returns its size.
func WriteUserRamdiskSize(img v1.Image) (int64, error) {
	var n countingWriter
	err := WriteUserRamdisk(context.Background(), &n, img, UserOptions{})
	return int64(n), err
}

type countingWriter int64

func (c *countingWriter) Write(b []byte) (int, error) {
	*c += countingWriter(len(b))
	return len(b), nil
}

type progressFunc func(v1.Hash, bool)

func (p progressFunc) Layer(d v1.Hash, _ int64, cached bool) LayerProgress {
	p(d, cached)
	return nopProgress{}
}

type nopProgress struct{}

func (nopProgress) Write(b []byte) (int, error) { return len(b), nil }
func (nopProgress) Done(error)                  {}

// TestPullNotFoundUnreachable covers a missing tag and repository, a
// registry nobody listens on, and plain HTTP to a non-loopback registry.
func TestPullNotFoundUnreachable(t *testing.T) {
	f := newFixture(t)
	f.push(t, f.ref("exists:1"), platformImage(t, "amd64"))
	_, err := f.resolve(f.ref("exists:2"), nil)
	wantKind(t, err, KindNotFound, f.ref("exists:2"))
	_, err = f.resolve(f.ref("nope:1"), nil)
	wantKind(t, err, KindNotFound, f.ref("nope:1"))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	_, err = f.resolve(dead+"/x:1", nil)
	pe := wantKind(t, err, KindUnreachable, dead+"/x:1")
	if !strings.Contains(pe.Error(), "connection refused") {
		t.Errorf("got %q, want it to say connection refused", pe)
	}

	// 10.0.0.0/8 would be reached over HTTP by go-containerregistry when
	// HTTPS fails; nitrovm refuses unless --insecure-registry.
	var sawHTTPS, sawHTTP bool
	tr := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Scheme == "https" {
			sawHTTPS = true
		} else {
			sawHTTP = true
		}
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	})
	_, err = f.resolve("10.11.12.13:5000/x:1", func(o *PullOptions) { o.Transport = tr })
	wantKind(t, err, KindInsecure, "10.11.12.13:5000/x:1")
	if !sawHTTPS {
		t.Error("HTTPS was not tried first")
	}
	if sawHTTP {
		t.Error("a plain-HTTP request went out without --insecure-registry")
	}
	_, err = f.resolve("10.11.12.13:5000/x:1", func(o *PullOptions) { o.Transport = tr; o.Insecure = true })
	wantKind(t, err, KindUnreachable, "10.11.12.13:5000/x:1")
	if !sawHTTP {
		t.Error("with --insecure-registry: no plain-HTTP request went out")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestPullErrorMessages pins the one-line message of every cause.
func TestPullErrorMessages(t *testing.T) {
	const img = "localhost:5000/app:1"
	d := mustHash("sha256:" + strings.Repeat("ab", 32))
	g := mustHash("sha256:" + strings.Repeat("cd", 32))
	tests := []struct {
		name string
		err  *PullError
		want string
	}{
		{"bad reference", &PullError{Image: "UPPER", Kind: KindBadReference, Err: errors.New(`repository can only contain the characters "abcdefghijklmnopqrstuvwxyz0123456789_-./": UPPER`)},
			`image UPPER: invalid reference: repository can only contain the characters "abcdefghijklmnopqrstuvwxyz0123456789_-./": UPPER`},
		{"not found", &PullError{Image: img, Kind: KindNotFound, Registry: "localhost:5000", Err: errors.New("MANIFEST_UNKNOWN")},
			"image localhost:5000/app:1: not found at localhost:5000: MANIFEST_UNKNOWN"},
		{"not local", &PullError{Image: img, Kind: KindNotFound, Err: errNotLocal},
			"image localhost:5000/app:1: not in a local image store nor in nitrovm's cache, and --pull never"},
		{"unauthorized", &PullError{Image: img, Kind: KindUnauthorized, Registry: "localhost:5000", Err: errors.New("HTTP 401")},
			"image localhost:5000/app:1: unauthorized at localhost:5000 (log in with 'docker login', or check ~/.docker/config.json or $DOCKER_CONFIG; a repository that does not exist can also answer this): HTTP 401"},
		{"platform", &PullError{Image: img, Kind: KindPlatform, Registry: "localhost:5000", Err: &PlatformError{Want: "linux/amd64", Have: []string{"linux/arm64"}}},
			"image localhost:5000/app:1: no linux/amd64 image (it has linux/arm64); choose one with --platform"},
		{"digest mismatch", &PullError{Image: img, Kind: KindDigestMismatch, Registry: "localhost:5000", Err: &LayerError{Digest: d, Err: &DigestMismatchError{Want: d, Got: g}}},
			"image localhost:5000/app:1: digest mismatch at localhost:5000: layer content of " + d.String() + " hashes to " + g.String() + "; nothing was cached"},
		{"unreachable", &PullError{Image: img, Kind: KindUnreachable, Registry: "localhost:5000", Err: fmt.Errorf("Get: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})},
			"image localhost:5000/app:1: registry localhost:5000 unreachable: dial tcp: connection refused"},
		{"interrupted", &PullError{Image: img, Kind: KindInterrupted, Registry: "localhost:5000", Err: &LayerError{Digest: d, Got: 10, Size: 20, Err: io.ErrUnexpectedEOF}},
			"image localhost:5000/app:1: download from localhost:5000 interrupted: layer " + d.String() + " after 10 of 20 bytes: unexpected EOF; nothing was cached"},
		{"disk full", &PullError{Image: img, Kind: KindDiskFull, Registry: "localhost:5000", Err: &os.PathError{Op: "write", Path: "/cache/blobs/sha256/.tmp-1", Err: syscall.ENOSPC}},
			"image localhost:5000/app:1: disk full while writing the image cache: write /cache/blobs/sha256/.tmp-1: no space left on device"},
		{"insecure", &PullError{Image: "10.0.0.1:5000/a", Kind: KindInsecure, Registry: "10.0.0.1:5000", Err: &insecureError{host: "10.0.0.1:5000"}},
			"image 10.0.0.1:5000/a: refused: 10.0.0.1:5000 answers only over plain HTTP, which nitrovm uses only for localhost and 127.0.0.1; pass --insecure-registry to allow it"},
		{"local store", &PullError{Image: "app", Kind: KindLocal, Registry: "docker", Err: errors.New("docker save app: exit status 1: no space")},
			"image app: docker: docker save app: exit status 1: no space"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestClassify maps underlying errors to causes.
func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want ErrorKind
	}{
		{"enospc", fmt.Errorf("put: %w", &os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}), KindDiskFull},
		{"edquot", syscall.EDQUOT, KindDiskFull},
		{"mismatch", &DigestMismatchError{}, KindDigestMismatch},
		{"refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, KindUnreachable},
		{"dns", &net.DNSError{Err: "no such host", Name: "nope.invalid"}, KindUnreachable},
		{"short body", io.ErrUnexpectedEOF, KindInterrupted},
		{"reset", syscall.ECONNRESET, KindInterrupted},
		{"insecure", &insecureError{host: "h"}, KindInsecure},
		{"other", errors.New("boom"), KindOther},
	}
	for _, tt := range tests {
		if got := classify(tt.err); got != tt.want {
			t.Errorf("%s: got %d, want %d", tt.name, got, tt.want)
		}
	}
}

// TestCachePutDiskFull checks that a write error (the disk full) leaves
// nothing behind.
func TestCachePutDiskFull(t *testing.T) {
	c := &Cache{Dir: t.TempDir()}
	d := mustHash("sha256:" + strings.Repeat("ab", 32))
	err := c.Put(d, 100, io.MultiReader(strings.NewReader("abc"), errReader{syscall.ENOSPC}), nil)
	if classify(err) != KindDiskFull {
		t.Fatalf("got %v, want a disk-full error", err)
	}
	wantNothingCached(t, c, d)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// TestDockerHubNames checks that short names resolve as docker resolves
// them and are recorded as docker shows them.
func TestDockerHubNames(t *testing.T) {
	tests := []struct{ ref, registry, repo, tag string }{
		{"alpine", "index.docker.io", "index.docker.io/library/alpine", "alpine:latest"},
		{"alpine:3.20", "index.docker.io", "index.docker.io/library/alpine", "alpine:3.20"},
		{"bitnami/nginx", "index.docker.io", "index.docker.io/bitnami/nginx", "bitnami/nginx:latest"},
		{"public.ecr.aws/docker/library/busybox:1.36", "public.ecr.aws", "public.ecr.aws/docker/library/busybox", "public.ecr.aws/docker/library/busybox:1.36"},
		{"localhost:5000/hello", "localhost:5000", "localhost:5000/hello", "localhost:5000/hello:latest"},
	}
	for _, tt := range tests {
		r, err := name.ParseReference(tt.ref)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Context().RegistryStr(); got != tt.registry {
			t.Errorf("%s: registry %q, want %q", tt.ref, got, tt.registry)
		}
		if got := r.Context().Name(); got != tt.repo {
			t.Errorf("%s: repository %q, want %q", tt.ref, got, tt.repo)
		}
		if got := repoTag(tt.ref); got != tt.tag {
			t.Errorf("%s: RepoTags entry %q, want %q", tt.ref, got, tt.tag)
		}
	}
}
