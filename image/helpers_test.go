package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/cavaliergopher/cpio"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// tf is one tar entry of a test layer.
type tf struct {
	name, body, link string
	typ              byte
	mode             int64
	uid              int
}

func layerTar(t testing.TB, files []tf) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		typ := f.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := f.mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: f.name, Typeflag: typ, Mode: mode, Linkname: f.link, Uid: f.uid, Gid: f.uid, Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			h.Size = int64(len(f.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(f.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func layerFromBytes(t testing.TB, b []byte) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// testImage builds an image from layers given bottom first.
func testImage(t testing.TB, cfg v1.Config, layers ...[]tf) v1.Image {
	t.Helper()
	var ls []v1.Layer
	for _, files := range layers {
		ls = append(ls, layerFromBytes(t, layerTar(t, files)))
	}
	img, err := mutate.AppendLayers(empty.Image, ls...)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// cpioEntry is an entry read back from an archive.
type cpioEntry struct {
	mode cpio.FileMode
	uid  int
	body string
	link string
}

func readCpio(t testing.TB, b []byte) ([]string, map[string]cpioEntry) {
	t.Helper()
	r := cpio.NewReader(bytes.NewReader(b))
	var names []string
	m := make(map[string]cpioEntry)
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			return names, m
		}
		if err != nil {
			t.Fatalf("read cpio: %v", err)
		}
		body, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("read cpio %s: %v", h.Name, err)
		}
		names = append(names, h.Name)
		m[h.Name] = cpioEntry{mode: h.Mode, uid: h.Uid, body: string(body), link: h.Linkname}
	}
}

func userRamdisk(t testing.TB, img v1.Image, o UserOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteUserRamdisk(context.Background(), &buf, img, o); err != nil {
		t.Fatalf("WriteUserRamdisk: %v", err)
	}
	return buf.Bytes()
}

func appendRaw(img v1.Image, l v1.Layer) (v1.Image, error) { return mutate.AppendLayers(img, l) }
