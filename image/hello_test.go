package image

import (
	"context"
	"os"
	"testing"

	"github.com/cavaliergopher/cpio"

	"github.com/nitrovm/nitrovm/internal/testimage"
)

// helloBusybox is Debian's busybox-static, installed by scripts/deps.sh.
const helloBusybox = "/bin/busybox"

// TestHelloExampleSize builds AWS's hello example (busybox with its
// applets hard-linked) and checks that the user ramdisk is at most 10%
// larger than the image's layers: hard links are not copies.
func TestHelloExampleSize(t *testing.T) {
	if _, err := os.Stat(helloBusybox); err != nil {
		t.Skipf("%s missing (scripts/deps.sh installs busybox-static): %v", helloBusybox, err)
	}
	img, err := testimage.Hello(helloBusybox)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := testimage.UncompressedSize(img)
	if err != nil {
		t.Fatal(err)
	}
	var buf countingWriter
	if err := WriteUserRamdisk(context.Background(), &buf, img, UserOptions{}); err != nil {
		t.Fatal(err)
	}
	rd := int64(buf)
	t.Logf("hello example: layers %d bytes, user ramdisk %d bytes (%.3f)", layers, rd, float64(rd)/float64(layers))
	if rd*10 > layers*11 {
		t.Errorf("user ramdisk of %d bytes is more than 10%% larger than the layers (%d bytes)", rd, layers)
	}

	// The layout: one busybox file, the applets symlinks to it.
	_, m := readCpio(t, userRamdisk(t, img, UserOptions{}))
	if e := m["rootfs/bin/["]; e.mode&cpio.ModeType != cpio.TypeReg || len(e.body) == 0 {
		t.Errorf("rootfs/bin/[: got mode %v, %d bytes, want the busybox binary", e.mode, len(e.body))
	}
	for _, n := range []string{"rootfs/bin/busybox", "rootfs/bin/sh", "rootfs/bin/sleep"} {
		if e := m[n]; e.mode != cpio.TypeSymlink|0o755 || e.link != "[" {
			t.Errorf("%s: got mode %v link %q, want a symlink to \"[\"", n, e.mode, e.link)
		}
	}
	if e := m["rootfs/bin/hello.sh"]; e.mode != cpio.TypeReg|0o755 {
		t.Errorf("rootfs/bin/hello.sh: got mode %v", e.mode)
	}
	if got, want := m["env"].body, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nHELLO="+testimage.HelloGreeting+"\n"; got != want {
		t.Errorf("env: got %q, want %q", got, want)
	}
	if got, want := m["cmd"].body, "/bin/hello.sh\n"; got != want {
		t.Errorf("cmd: got %q, want %q", got, want)
	}
}
