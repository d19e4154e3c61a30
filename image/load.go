package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// OCI image layout files and annotations (image-spec image-layout.md,
// annotations.md), and containerd's name annotation that `docker save`
// writes.
const (
	ociIndexFile      = "index.json"
	dockerManifest    = "manifest.json"
	annotationRefName = "org.opencontainers.image.ref.name"
	annotationName    = "io.containerd.image.name"
)

// Load reads a container image from path without a Docker daemon: a
// `docker save` tarball, an OCI image layout directory, or a tar of an OCI
// image layout. ref selects one image when the file holds several (a tag
// such as "hello:latest", matched against the repository tags or the OCI
// ref-name annotations); "" takes the only one. tmpDir receives the
// unpacked copy of an OCI layout tar; the caller removes nothing.
func Load(path, ref, tmpDir string) (v1.Image, error) {
	img, _, err := LoadTagged(path, ref, tmpDir)
	return img, err
}

// LoadTagged is Load that also returns the name the file gives the loaded
// image, such as "hello:latest": the first RepoTags entry of a docker save
// archive, or the io.containerd.image.name annotation (without docker.io's
// "docker.io/library/" prefix) or else the org.opencontainers.image.ref.name
// annotation of the chosen OCI index entry. The tag is "" when the file
// names no tag for the image; with ref non-empty it is ref. A file with
// several images and ref "" is an error, as for Load (an OCI layout may
// still pick the one entry for linux and this machine's architecture).
func LoadTagged(path, ref, tmpDir string) (v1.Image, string, error) {
	img, tag, _, err := loadTagged(path, ref, tmpDir)
	if err == nil && ref != "" {
		tag = ref
	}
	return img, tag, err
}

// LoadSource is LoadTagged returning a [Source] (From "file"): RepoTags
// holds the tag ("" gives none), and RepoDigests, for an OCI layout whose
// chosen index entry names a repository (by its annotations or by ref),
// that repository at the entry's digest, which is the digest a registry
// gives the same image or index.
func LoadSource(path, ref, tmpDir string) (*Source, error) {
	img, tag, digest, err := loadTagged(path, ref, tmpDir)
	if err != nil {
		return nil, err
	}
	if ref != "" {
		tag = ref
	}
	src := &Source{Image: img, From: "file"}
	if tag == "" {
		return src, nil
	}
	src.RepoTags = []string{repoTag(tag)}
	if digest != (v1.Hash{}) {
		if t, err := name.NewTag(tag); err == nil {
			src.RepoDigests = []string{familiarName(t.Context().Name()) + "@" + digest.String()}
		}
	}
	return src, nil
}

func loadTagged(path, ref, tmpDir string) (v1.Image, string, v1.Hash, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, "", v1.Hash{}, fmt.Errorf("image: %w", err)
	}
	if fi.IsDir() {
		return loadLayout(path, ref)
	}
	names, err := tarNames(path)
	if err != nil {
		return nil, "", v1.Hash{}, fmt.Errorf("image: read %s: %w", path, err)
	}
	switch {
	case names[dockerManifest]:
		img, tag, err := loadDockerArchive(path, ref)
		return img, tag, v1.Hash{}, err
	case names[ociIndexFile]:
		dir, err := os.MkdirTemp(tmpDir, "nitrovm-oci-*")
		if err != nil {
			return nil, "", v1.Hash{}, fmt.Errorf("image: %w", err)
		}
		if err := untarLayout(path, dir); err != nil {
			os.RemoveAll(dir)
			return nil, "", v1.Hash{}, fmt.Errorf("image: unpack OCI layout %s: %w", path, err)
		}
		// Layer blobs are opened lazily: the directory must outlive Load.
		return loadLayout(dir, ref)
	}
	return nil, "", v1.Hash{}, fmt.Errorf("image: %s is neither a docker save archive (manifest.json) nor an OCI layout (index.json)", path)
}

// loadDockerArchive loads the image named ref, or the only image, from a
// docker save archive, with the image's first RepoTags entry ("" when it
// has none or ref chose it).
func loadDockerArchive(path, ref string) (v1.Image, string, error) {
	var tag *name.Tag
	if ref != "" {
		t, err := name.NewTag(ref)
		if err != nil {
			return nil, "", fmt.Errorf("image: parse reference %q: %w", ref, err)
		}
		tag = &t
	}
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(path) })
	if err != nil {
		return nil, "", fmt.Errorf("image: load docker archive %s: %w", path, err)
	}
	if ref == "" && len(m) > 1 {
		var tags []string
		for _, d := range m {
			tags = append(tags, d.RepoTags...)
		}
		return nil, "", fmt.Errorf("image: docker archive %s holds %d images (tags %s); name one with --docker-uri", path, len(m), strings.Join(tags, ", "))
	}
	img, err := tarball.ImageFromPath(path, tag)
	if err != nil {
		return nil, "", fmt.Errorf("image: load docker archive %s: %w", path, err)
	}
	if ref == "" && len(m) == 1 && len(m[0].RepoTags) > 0 {
		return img, familiarName(m[0].RepoTags[0]), nil
	}
	return img, "", nil
}

// familiarName drops Docker Hub's registry and "library/" prefixes, as
// `docker images` shows names: "docker.io/library/hello:latest" becomes
// "hello:latest".
func familiarName(s string) string {
	for _, p := range []string{"docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"} {
		if rest, ok := strings.CutPrefix(s, p); ok && rest != "" {
			return rest
		}
	}
	return s
}

// annotatedTag is the name an OCI index entry's annotations give it: the
// containerd name, else the OCI ref name, else "".
func annotatedTag(ann map[string]string) string {
	if v := ann[annotationName]; v != "" {
		return familiarName(v)
	}
	return ann[annotationRefName]
}

// tarNames returns the set of cleaned top-level file names in a tar.
func tarNames(path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := make(map[string]bool)
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names, nil
		}
		if err != nil {
			return nil, err
		}
		names[cleanName(h.Name)] = true
	}
}

// untarLayout unpacks the regular files of an OCI layout tar into dir.
// Names are cleaned onto dir, so nothing lands outside it; links and special
// files are ignored.
func untarLayout(path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		n := cleanName(h.Name)
		if n == "" || (h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeRegA) { //nolint:staticcheck
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, tr)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
}

// loadLayout picks one image out of an OCI layout directory.
// The digest is that of the chosen top-level index entry.
func loadLayout(dir, ref string) (v1.Image, string, v1.Hash, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, "", v1.Hash{}, fmt.Errorf("image: open OCI layout %s: %w", dir, err)
	}
	img, tag, d, err := pickImage(idx, ref)
	return img, tag, d.Digest, err
}

// pickImage selects the image named ref (or the only image) from an index,
// descending into nested indexes by platform (linux and this machine's
// architecture), and returns it with the tag its index entry's annotations
// give it (see annotatedTag; a nested index's entry when the outer one has
// none), and the chosen entry of idx.
func pickImage(idx v1.ImageIndex, ref string) (v1.Image, string, v1.Descriptor, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, "", v1.Descriptor{}, fmt.Errorf("image: read index: %w", err)
	}
	var cands []v1.Descriptor
	for _, d := range im.Manifests {
		if ref == "" || refMatches(d.Annotations, ref) {
			cands = append(cands, d)
		}
	}
	if len(cands) > 1 {
		var plat []v1.Descriptor
		for _, d := range cands {
			if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == runtime.GOARCH {
				plat = append(plat, d)
			}
		}
		if len(plat) != 1 {
			return nil, "", v1.Descriptor{}, fmt.Errorf("image: %d images match %q in the OCI layout; name one with --docker-uri", len(cands), ref)
		}
		cands = plat
	}
	if len(cands) == 0 {
		return nil, "", v1.Descriptor{}, fmt.Errorf("image: 0 images match %q in the OCI layout; name one with --docker-uri", ref)
	}
	d := cands[0]
	if d.MediaType.IsIndex() {
		child, err := idx.ImageIndex(d.Digest)
		if err != nil {
			return nil, "", v1.Descriptor{}, fmt.Errorf("image: open nested index %s: %w", d.Digest, err)
		}
		img, tag, _, err := pickImage(child, "")
		if err != nil {
			return nil, "", v1.Descriptor{}, err
		}
		if t := annotatedTag(d.Annotations); t != "" {
			tag = t
		}
		return img, tag, d, nil
	}
	img, err := idx.Image(d.Digest)
	if err != nil {
		return nil, "", v1.Descriptor{}, fmt.Errorf("image: open image %s: %w", d.Digest, err)
	}
	return img, annotatedTag(d.Annotations), d, nil
}

// refMatches reports whether an index entry's annotations name ref, either
// in full ("docker.io/library/hello:latest", "hello:latest") or by tag.
func refMatches(ann map[string]string, ref string) bool {
	for _, k := range []string{annotationName, annotationRefName} {
		v := ann[k]
		if v == "" {
			continue
		}
		if v == ref || strings.HasSuffix(v, "/"+ref) || strings.HasSuffix(ref, ":"+v) {
			return true
		}
		if t, err := name.NewTag(ref); err == nil && (v == t.Name() || v == t.TagStr()) {
			return true
		}
	}
	return false
}
