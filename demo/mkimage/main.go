// Command mkimage builds the nitrovm demo container image without Docker:
// one layer with the static demo binary at /bin/hello and a text file at
// /etc/greeting, CMD ["/bin/hello"], written as a `docker save` tarball.
// The output is reproducible: fixed timestamps (SOURCE_DATE_EPOCH or 0),
// owners and modes, so the same inputs give the same bytes.
//
// Usage: mkimage -binary hello -output hello.tar [-tag nitrovm-demo/hello:latest] [-greeting TEXT]
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// DefaultTag is the demo image's name.
const DefaultTag = "nitrovm-demo/hello:latest"

// imageSpec is what goes into the demo image.
type imageSpec struct {
	binary   []byte    // the static /bin/hello
	greeting string    // contents of /etc/greeting
	created  time.Time // mtime of every file and the image's created time
}

func main() {
	bin := flag.String("binary", "", "static demo enclave binary (demo/hello)")
	out := flag.String("output", "", "where to write the docker save tarball")
	tag := flag.String("tag", DefaultTag, "image name and tag")
	greeting := flag.String("greeting", "Hello from the nitrovm demo enclave!\n", "contents of /etc/greeting (change it to change PCR0 and PCR2)")
	flag.Parse()
	if err := run(*bin, *out, *tag, *greeting, os.Getenv("SOURCE_DATE_EPOCH")); err != nil {
		fmt.Fprintf(os.Stderr, "mkimage: %v\n", err)
		os.Exit(1)
	}
}

func run(bin, out, tagStr, greeting, epoch string) error {
	if bin == "" || out == "" {
		return fmt.Errorf("-binary and -output are required")
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("read binary: %w", err)
	}
	created := time.Unix(0, 0).UTC()
	if epoch != "" {
		n, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", epoch, err)
		}
		created = time.Unix(n, 0).UTC()
	}
	tag, err := name.NewTag(tagStr)
	if err != nil {
		return fmt.Errorf("parse tag %q: %w", tagStr, err)
	}
	img, err := buildImage(imageSpec{binary: b, greeting: greeting, created: created})
	if err != nil {
		return err
	}
	if err := tarball.WriteToFile(out, tag, img); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return nil
}

// buildImage assembles the one-layer image.
func buildImage(s imageSpec) (v1.Image, error) {
	layerBytes, err := layerTar(s)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("make layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, mutate.Addendum{Layer: layer, History: v1.History{Created: v1.Time{Time: s.created}, CreatedBy: "nitrovm demo/mkimage"}}.Layer)
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Created = v1.Time{Time: s.created}
	cf.Config.Cmd = []string{"/bin/hello"}
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return img, nil
}

// layerTar returns the layer: bin/, bin/hello, etc/, etc/greeting, in that
// order, owned by root, with fixed mtimes.
func layerTar(s imageSpec) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	entries := []struct {
		name string
		mode int64
		body []byte
		dir  bool
	}{
		{"bin/", 0o755, nil, true},
		{"bin/hello", 0o755, s.binary, false},
		{"etc/", 0o755, nil, true},
		{"etc/greeting", 0o644, []byte(s.greeting), false},
	}
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: s.created, Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: int64(len(e.body))}
		if e.dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer %s: %w", e.name, err)
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, fmt.Errorf("layer %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return buf.Bytes(), nil
}
