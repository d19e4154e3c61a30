package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// CABundlePaths returns the CA bundle files TrustCA extends: Debian's and
// Amazon Linux's, the ones AWS's C SDK (kmstool-enclave-cli) reads.
func CABundlePaths() []string {
	return []string{"etc/ssl/certs/ca-certificates.crt", "etc/pki/tls/certs/ca-bundle.crt"}
}

// maxBundleBytes bounds a CA bundle file read from an image.
const maxBundleBytes = 16 << 20

// maxSymlinkHops bounds symlink resolution of a bundle path.
const maxSymlinkHops = 8

// TrustCA returns img with one more layer in which each CA bundle file
// of CABundlePaths that exists (a symlink is replaced by a file with its
// target's content) ends with rootPEM; if none exists, the first is
// created holding rootPEM alone. The image's filesystem changes, and with
// it the EIF's PCR0 and PCR2.
func TrustCA(img v1.Image, rootPEM []byte, modTime time.Time) (v1.Image, error) {
	files, links, err := scanBundles(img)
	if err != nil {
		return nil, fmt.Errorf("image: trust CA: %w", err)
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	wrote := false
	for _, p := range CABundlePaths() {
		content, ok := resolveBundle(p, files, links)
		if !ok {
			continue
		}
		if err := writeBundle(tw, p, append(append(bytes.Clone(content), '\n'), rootPEM...), modTime); err != nil {
			return nil, err
		}
		wrote = true
	}
	if !wrote {
		if err := writeBundle(tw, CABundlePaths()[0], rootPEM, modTime); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := layer.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return nil, fmt.Errorf("image: trust CA: %w", err)
	}
	return mutate.AppendLayers(img, l)
}

// scanBundles reads the flattened filesystem for the files and symlinks a
// bundle path may resolve through (everything under etc/).
func scanBundles(img v1.Image) (map[string][]byte, map[string]string, error) {
	rc := mutate.Extract(img)
	defer rc.Close()
	files, links := map[string][]byte{}, map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, links, nil
		}
		if err != nil {
			return nil, nil, err
		}
		name := path.Clean("/" + h.Name)[1:]
		switch h.Typeflag {
		case tar.TypeSymlink:
			links[name] = h.Linkname
		case tar.TypeReg:
			if !isBundleCandidate(name) || h.Size > maxBundleBytes {
				continue
			}
			b, err := io.ReadAll(io.LimitReader(tr, maxBundleBytes))
			if err != nil {
				return nil, nil, err
			}
			files[name] = b
		}
	}
}

// isBundleCandidate keeps PEM-looking files in the usual trust store
// directories (bundle targets live there: /etc/ssl, /etc/pki, ...).
func isBundleCandidate(name string) bool {
	return path.Ext(name) == ".crt" || path.Ext(name) == ".pem"
}

// resolveBundle follows symlinks from p to a regular file.
func resolveBundle(p string, files map[string][]byte, links map[string]string) ([]byte, bool) {
	for range maxSymlinkHops {
		if b, ok := files[p]; ok {
			return b, true
		}
		t, ok := links[p]
		if !ok {
			return nil, false
		}
		if !path.IsAbs(t) {
			t = path.Join(path.Dir(p), t)
		}
		p = path.Clean("/" + t)[1:]
	}
	return nil, false
}

func writeBundle(tw *tar.Writer, name string, content []byte, modTime time.Time) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content)), ModTime: modTime}); err != nil {
		return err
	}
	_, err := tw.Write(content)
	return err
}
