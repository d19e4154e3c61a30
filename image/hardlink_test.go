package image

import (
	"archive/tar"
	"testing"

	"github.com/cavaliergopher/cpio"
)

// TestHardLinksAsLinuxkit checks that hard links become relative symlinks
// to the first name of their inode in walk order, as in nitro-cli's EIFs,
// and that the data is written once.
func TestHardLinksAsLinuxkit(t *testing.T) {
	img := testImage(t, helloConfig, []tf{
		{name: "bin/busybox", body: "BUSYBOX", mode: 0o755},
		{name: "bin/[", typ: tar.TypeLink, link: "bin/busybox"},
		{name: "bin/sh", typ: tar.TypeLink, link: "bin/busybox"},
		{name: "usr/bin/env", typ: tar.TypeLink, link: "/bin/busybox"},
		{name: "usr/sbin/chain", typ: tar.TypeLink, link: "usr/bin/env"},
		{name: "top", typ: tar.TypeLink, link: "bin/sh"},
	})
	b := userRamdisk(t, img, UserOptions{})
	_, m := readCpio(t, b)
	tests := []struct {
		name string
		mode cpio.FileMode
		body string
		link string
	}{
		{"rootfs/bin/[", cpio.TypeReg | 0o755, "BUSYBOX", ""}, // first in walk order
		{"rootfs/bin/busybox", cpio.TypeSymlink | 0o755, "", "["},
		{"rootfs/bin/sh", cpio.TypeSymlink | 0o755, "", "["},
		{"rootfs/usr/bin/env", cpio.TypeSymlink | 0o755, "", "../../bin/["},
		{"rootfs/usr/sbin/chain", cpio.TypeSymlink | 0o755, "", "../../bin/["},
		{"rootfs/top", cpio.TypeSymlink | 0o755, "", "bin/["},
	}
	for _, tt := range tests {
		got := m[tt.name]
		if got.mode != tt.mode || got.body != tt.body || got.link != tt.link {
			t.Errorf("%s: got mode %v body %q link %q, want mode %v body %q link %q", tt.name, got.mode, got.body, got.link, tt.mode, tt.body, tt.link)
		}
	}
}

// TestHardLinkAcrossLayers checks that a hard link whose target an upper
// layer replaced is dropped rather than pointed at the new file.
func TestHardLinkAcrossLayers(t *testing.T) {
	img := testImage(t, helloConfig,
		[]tf{{name: "a", body: "old"}, {name: "b", typ: tar.TypeLink, link: "a"}},
		[]tf{{name: "a", body: "new"}},
	)
	_, m := readCpio(t, userRamdisk(t, img, UserOptions{}))
	if _, ok := m["rootfs/b"]; ok {
		t.Errorf("got rootfs/b %+v, want it dropped", m["rootfs/b"])
	}
	if got := m["rootfs/a"].body; got != "new" {
		t.Errorf("rootfs/a: got %q, want %q", got, "new")
	}
}

func TestRelPath(t *testing.T) {
	tests := []struct{ dir, target, want string }{
		{".", "bin/busybox", "bin/busybox"},
		{"bin", "bin/busybox", "busybox"},
		{"usr/bin", "bin/busybox", "../../bin/busybox"},
		{"a/b", "a/c/d", "../c/d"},
		{"a", "a/b/c", "b/c"},
		{"bin", "top", "../top"},
	}
	for _, tt := range tests {
		if got := relPath(tt.dir, tt.target); got != tt.want {
			t.Errorf("relPath(%q, %q): got %q, want %q", tt.dir, tt.target, got, tt.want)
		}
	}
}

func TestWalkLess(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"a/b", "a-c", true}, // the walk enters a before visiting a-c
		{"a-c", "a/b", false},
		{"a", "a/b", true},
		{"bin/[", "bin/busybox", true},
		{"b", "a", false},
		{"a", "a", false},
	}
	for _, tt := range tests {
		if got := walkLess(tt.a, tt.b); got != tt.want {
			t.Errorf("walkLess(%q, %q): got %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
