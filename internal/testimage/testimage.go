// Package testimage builds small container images for tests and demos
// without Docker.
package testimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// HelloGreeting is what AWS's hello example prints, its ENV HELLO.
const HelloGreeting = "Hello from the enclave side!"

// helloScript is /bin/hello.sh: the greeting in a loop, numbered.
const helloScript = `#!/bin/sh
n=1
while true; do
	printf '[%4d] %s\n' "$n" "$HELLO"
	n=$((n + 1))
	sleep 1
done
`

// busyboxPath is the official busybox image's PATH (docker inspect busybox).
const busyboxPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// modTime is the mtime of every entry: fixed, so the image is reproducible.
var modTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Hello returns AWS's examples/x86_64/hello image (FROM busybox; ENV
// HELLO="Hello from the enclave side!"; COPY hello.sh /bin/hello.sh; CMD
// ["/bin/hello.sh"]) rebuilt without Docker from the static busybox
// binary at busybox (Debian's busybox-static): a base layer laid out as
// the official busybox image, every applet a hard link in /bin, then a
// layer with /bin/hello.sh. The same binary gives the same image.
func Hello(busybox string) (v1.Image, error) {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", busybox, err)
	}
	applets := strings.Fields(string(out))
	if len(applets) == 0 {
		return nil, fmt.Errorf("%s --list: no applets", busybox)
	}
	base, err := BusyboxLayer(bin, applets)
	if err != nil {
		return nil, err
	}
	app, err := Layer([]File{{Name: "bin/hello.sh", Mode: 0o755, Body: []byte(helloScript)}})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, base, app)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Env = []string{busyboxPath, "HELLO=" + HelloGreeting}
	cf.Config.Cmd = []string{"/bin/hello.sh"}
	return mutate.ConfigFile(img, cf)
}

// BusyboxLayer is a layer laid out as the official busybox image's: the
// directories, /etc/passwd and /etc/group, and in /bin the binary under
// every applet name. As in a tar that docker writes, the first name in
// order is the regular file and every other name a hard link to it.
func BusyboxLayer(bin []byte, applets []string) (v1.Layer, error) {
	names := append([]string{"busybox"}, applets...)
	sort.Strings(names)
	files := []File{
		{Name: "bin/", Dir: true, Mode: 0o755},
		{Name: "dev/", Dir: true, Mode: 0o755},
		{Name: "etc/", Dir: true, Mode: 0o755},
		{Name: "etc/group", Mode: 0o644, Body: []byte("root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n")},
		{Name: "etc/passwd", Mode: 0o644, Body: []byte("root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nnobody:x:65534:65534:nobody:/home:/bin/false\n")},
		{Name: "home/", Dir: true, Mode: 0o755},
		{Name: "root/", Dir: true, Mode: 0o700},
		{Name: "tmp/", Dir: true, Mode: 0o1777},
		{Name: "usr/", Dir: true, Mode: 0o755},
		{Name: "usr/sbin/", Dir: true, Mode: 0o755},
		{Name: "var/", Dir: true, Mode: 0o755},
	}
	first := ""
	for _, n := range names {
		if n == "" || strings.Contains(n, "/") {
			continue
		}
		if first == "" {
			first = "bin/" + n
			files = append(files, File{Name: first, Mode: 0o755, Body: bin})
			continue
		}
		files = append(files, File{Name: "bin/" + n, Mode: 0o755, Link: first})
	}
	sort.SliceStable(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	return Layer(files)
}

// File is one entry of a layer.
type File struct {
	Name string
	Mode int64
	Body []byte
	Dir  bool
	// Link, when set, makes the entry a hard link to that name.
	Link string
	// Symlink, when set, makes the entry a symbolic link to that target.
	Symlink string
}

// Layer returns a gzip-compressed layer of files, in the given order.
func Layer(files []File) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.Name, Mode: f.Mode, ModTime: modTime, Format: tar.FormatPAX}
		switch {
		case f.Dir:
			h.Typeflag = tar.TypeDir
		case f.Link != "":
			h.Typeflag, h.Linkname = tar.TypeLink, f.Link
		case f.Symlink != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.Symlink
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Body); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}

// UncompressedSize is the total size of img's layer tars.
func UncompressedSize(img v1.Image) (int64, error) {
	ls, err := img.Layers()
	if err != nil {
		return 0, err
	}
	var total int64
	for _, l := range ls {
		rc, err := l.Uncompressed()
		if err != nil {
			return 0, err
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}
