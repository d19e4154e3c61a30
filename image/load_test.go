package image

import (
	"archive/tar"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// tarDir writes the files under dir into a tar at path.
func tarDir(t *testing.T, dir, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: rel, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

func digestOf(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	img := testImage(t, helloConfig, []tf{{name: "bin/hello", body: "hello", mode: 0o755}})
	other := testImage(t, v1.Config{Cmd: []string{"/other"}}, []tf{{name: "other", body: "o"}})
	want := digestOf(t, img)

	// docker save, one image and two images.
	one := filepath.Join(dir, "one.tar")
	tag, _ := name.NewTag("hello:latest")
	if err := tarball.WriteToFile(one, tag, img); err != nil {
		t.Fatal(err)
	}
	two := filepath.Join(dir, "two.tar")
	tag2, _ := name.NewTag("other:v1")
	if err := tarball.MultiWriteToFile(two, map[name.Tag]v1.Image{tag: img, tag2: other}); err != nil {
		t.Fatal(err)
	}

	// OCI layout directory and its tar.
	lay := filepath.Join(dir, "layout")
	p, err := layout.Write(lay, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{annotationRefName: "latest", annotationName: "docker.io/library/hello:latest"})); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(other, layout.WithAnnotations(map[string]string{annotationRefName: "v1"})); err != nil {
		t.Fatal(err)
	}
	layTar := filepath.Join(dir, "layout.tar")
	tarDir(t, lay, layTar)

	junk := filepath.Join(dir, "junk.tar")
	tarDir(t, t.TempDir(), junk)
	notTar := filepath.Join(dir, "not.tar")
	os.WriteFile(notTar, []byte(strings.Repeat("junk", 200)), 0o644)

	tests := []struct {
		name, path, ref string
		want            v1.Hash
		wantErr         string
	}{
		{"docker save", one, "", want, ""},
		{"docker save by tag", two, "hello:latest", want, ""},
		{"docker save ambiguous", two, "", v1.Hash{}, "docker archive"},
		{"docker save bad ref", one, "UPPER:::", v1.Hash{}, "parse reference"},
		{"oci dir by ref", lay, "hello:latest", want, ""},
		{"oci dir ambiguous", lay, "", v1.Hash{}, "2 images match"},
		{"oci dir no match", lay, "nope:x", v1.Hash{}, "0 images match"},
		{"oci tar", layTar, "docker.io/library/hello:latest", want, ""},
		{"missing", filepath.Join(dir, "none"), "", v1.Hash{}, "no such file"},
		{"neither format", junk, "", v1.Hash{}, "neither a docker save"},
		{"not a tar", notTar, "", v1.Hash{}, "read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(tt.path, tt.ref, t.TempDir())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := digestOf(t, got); d != tt.want {
				t.Errorf("got image %v, want %v", d, tt.want)
			}
			cmd, _, err := Config(got)
			if err != nil || cmd[0] != "/bin/hello" {
				t.Errorf("got cmd %q (%v), want /bin/hello", cmd, err)
			}
		})
	}
}

func TestUntarLayoutStaysInside(t *testing.T) {
	dir := t.TempDir()
	evil := filepath.Join(dir, "evil.tar")
	f, _ := os.Create(evil)
	tw := tar.NewWriter(f)
	for _, n := range []string{"../../outside", "/abs", "index.json"} {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
		io.WriteString(tw, "x")
	}
	tw.WriteHeader(&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc"})
	tw.Close()
	f.Close()
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o755)
	if err := untarLayout(evil, out); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"outside", "abs", "index.json"} {
		if _, err := os.Stat(filepath.Join(out, n)); err != nil {
			t.Errorf("got %v, want %s unpacked inside", err, n)
		}
	}
	if _, err := os.Lstat(filepath.Join(out, "link")); err == nil {
		t.Error("symlink unpacked, want it skipped")
	}
	if _, err := os.Stat(filepath.Join(dir, "outside")); err == nil {
		t.Error("file escaped the directory")
	}
}

func TestLoadTagged(t *testing.T) {
	dir := t.TempDir()
	img := testImage(t, helloConfig, []tf{{name: "bin/hello", body: "hello", mode: 0o755}})
	other := testImage(t, v1.Config{Cmd: []string{"/other"}}, []tf{{name: "other", body: "o"}})

	dockerTar := func(file string, imgs map[name.Reference]v1.Image) string {
		p := filepath.Join(dir, file)
		if err := tarball.MultiRefWriteToFile(p, imgs); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hello, _ := name.NewTag("hello:latest")
	otherTag, _ := name.NewTag("registry.example:5000/team/other:v1")
	byDigest, _ := name.NewDigest("hello@" + digestOf(t, img).String())
	one := dockerTar("one.tar", map[name.Reference]v1.Image{hello: img})
	full := dockerTar("full.tar", map[name.Reference]v1.Image{otherTag: other})
	untagged := dockerTar("untagged.tar", map[name.Reference]v1.Image{byDigest: img})
	two := dockerTar("two.tar", map[name.Reference]v1.Image{hello: img, otherTag: other})

	ociLayout := func(sub string, add func(layout.Path)) string {
		p := filepath.Join(dir, sub)
		lp, err := layout.Write(p, empty.Index)
		if err != nil {
			t.Fatal(err)
		}
		add(lp)
		return p
	}
	appendImg := func(lp layout.Path, im v1.Image, ann map[string]string) {
		if err := lp.AppendImage(im, layout.WithAnnotations(ann)); err != nil {
			t.Fatal(err)
		}
	}
	containerd := ociLayout("containerd", func(lp layout.Path) {
		appendImg(lp, img, map[string]string{annotationRefName: "latest", annotationName: "docker.io/library/hello:latest"})
	})
	refName := ociLayout("refname", func(lp layout.Path) {
		appendImg(lp, img, map[string]string{annotationRefName: "example.com/hello:v2"})
	})
	bare := ociLayout("bare", func(lp layout.Path) { appendImg(lp, img, nil) })
	nestedIdx := ociLayout("nested", func(lp layout.Path) {
		ii := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}})
		if err := lp.AppendIndex(ii, layout.WithAnnotations(map[string]string{annotationRefName: "hello:multi"})); err != nil {
			t.Fatal(err)
		}
	})
	several := ociLayout("several", func(lp layout.Path) {
		appendImg(lp, img, map[string]string{annotationRefName: "hello:latest"})
		appendImg(lp, other, map[string]string{annotationRefName: "other:v1"})
	})
	refNameTar := filepath.Join(dir, "refname.tar")
	tarDir(t, refName, refNameTar)

	tests := []struct {
		name, path, ref string
		want            string
		wantErr         string
	}{
		{"docker save tag", one, "", "hello:latest", ""},
		{"docker save registry tag", full, "", "registry.example:5000/team/other:v1", ""},
		{"docker save untagged", untagged, "", "", ""},
		{"docker save ref wins", two, "hello:latest", "hello:latest", ""},
		{"docker save several", two, "", "", "holds 2 images"},
		{"docker save several names tags", two, "", "", "name one with --docker-uri"},
		{"oci containerd name", containerd, "", "hello:latest", ""},
		{"oci ref name", refName, "", "example.com/hello:v2", ""},
		{"oci tar ref name", refNameTar, "", "example.com/hello:v2", ""},
		{"oci no annotation", bare, "", "", ""},
		{"oci nested index", nestedIdx, "", "hello:multi", ""},
		{"oci ref wins", several, "other:v1", "other:v1", ""},
		{"oci several", several, "", "", "2 images match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, got, err := LoadTagged(tt.path, tt.ref, t.TempDir())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || img == nil {
				t.Fatalf("got %v, %v, want an image", img, err)
			}
			if got != tt.want {
				t.Errorf("got tag %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFamiliarName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"hello:latest", "hello:latest"},
		{"docker.io/library/hello:latest", "hello:latest"},
		{"index.docker.io/library/hello:1", "hello:1"},
		{"docker.io/team/app:2", "team/app:2"},
		{"ghcr.io/team/app:2", "ghcr.io/team/app:2"},
	}
	for _, tt := range tests {
		if got := familiarName(tt.in); got != tt.want {
			t.Errorf("familiarName(%q): got %v, want %v", tt.in, got, tt.want)
		}
	}
}
