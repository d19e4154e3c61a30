package pseudofs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMountAll(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	dir := filepath.Join(t.TempDir(), "a", "tmp")
	if err := MountAll([]Mount{{"tmpfs", dir, "tmpfs"}}); err != nil {
		t.Fatalf("MountAll: %v", err)
	}
	defer unix.Unmount(dir, 0)
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Fatalf("statfs %s: type %#x, %v; want tmpfs", dir, st.Type, err)
	}
	// Mounting again on the same target stacks a second tmpfs or reports
	// EBUSY; either way MountAll succeeds.
	if err := MountAll([]Mount{{"tmpfs", dir, "tmpfs"}}); err != nil {
		t.Errorf("MountAll again: %v", err)
	}
	unix.Unmount(dir, 0)
}

func TestMountAllErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		m    Mount
		want string
	}{
		{"target under a file", Mount{"tmpfs", filepath.Join(file, "sub"), "tmpfs"}, "mkdir " + filepath.Join(file, "sub") + ": "},
		{"unknown file system", Mount{"none", t.TempDir(), "nitrovm-no-such-fs"}, "mount nitrovm-no-such-fs on "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := MountAll([]Mount{tt.m})
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("MountAll: got %v, want an error starting %q", err, tt.want)
			}
		})
	}
}
