package jail

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"
)

// Bind is one host path that stays visible in the confined root, at the
// same path.
type Bind struct {
	Path     string
	ReadOnly bool
}

// Confine replaces the process's view of the filesystem with an empty,
// read-only tmpfs on which only binds are visible (at their own paths).
// newRoot is an empty directory to mount that tmpfs on; it must not be
// under a bind. The process must be root and alone in a private mount
// namespace (the spawner's CLONE_NEWNS): the mounts made here never
// reach the host's namespace.
//
// The switch is pivot_root(2). Where the root filesystem is the initial
// ramfs (an initramfs without switch_root, like the nested L1), the
// kernel refuses to pivot it away (EINVAL); Confine then does what runc
// does there: it moves the new root over "/" (MS_MOVE) and chroots into
// it. The old root is then still underneath, reachable only with
// CAP_SYS_CHROOT or mount rights, which the supervisor drops next (and
// seccomp forbids chroot and mount). The returned string says which of
// the two was used.
func Confine(newRoot string, binds []Bind) (string, error) {
	// Nothing below propagates to the parent namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return "", fmt.Errorf("make mounts private: %w", err)
	}
	if err := os.MkdirAll(newRoot, 0o700); err != nil {
		return "", fmt.Errorf("create jail root: %w", err)
	}
	if err := unix.Mount("tmpfs", newRoot, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755,size=64k"); err != nil {
		return "", fmt.Errorf("mount jail root tmpfs: %w", err)
	}
	// Parents first, so a bind inside another bind lands on it.
	binds = append([]Bind(nil), binds...)
	sort.Slice(binds, func(i, j int) bool { return binds[i].Path < binds[j].Path })
	for _, b := range binds {
		if err := bindInto(newRoot, b); err != nil {
			unix.Unmount(newRoot, unix.MNT_DETACH)
			return "", err
		}
	}
	if err := unix.Mount("", newRoot, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755,size=64k"); err != nil {
		unix.Unmount(newRoot, unix.MNT_DETACH)
		return "", fmt.Errorf("make jail root read-only: %w", err)
	}
	return switchRoot(newRoot)
}

// bindInto bind-mounts b.Path onto the same path under root.
func bindInto(root string, b Bind) error {
	fi, err := os.Stat(b.Path)
	if err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	target := filepath.Join(root, b.Path)
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return fmt.Errorf("jail: create %s: %w", target, err)
	}
	if fi.IsDir() {
		err = os.Mkdir(target, 0o755)
	} else {
		var f *os.File
		if f, err = os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err == nil {
			f.Close()
		}
	}
	if err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("jail: create %s: %w", target, err)
	}
	if err := unix.Mount(b.Path, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("jail: bind %s: %w", b.Path, err)
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_NOSUID)
	if b.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	if fi.Mode()&os.ModeDevice == 0 {
		flags |= unix.MS_NODEV | unix.MS_NOEXEC
	}
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		return fmt.Errorf("jail: restrict %s: %w", b.Path, err)
	}
	return nil
}

// switchRoot makes newRoot the process's root.
func switchRoot(newRoot string) (string, error) {
	if err := unix.Chdir(newRoot); err != nil {
		return "", fmt.Errorf("enter jail root: %w", err)
	}
	// pivot_root(".", ".") stacks the old root under the new one, which
	// the detach then drops (the runc idiom, no put_old directory needed).
	err := unix.PivotRoot(".", ".")
	if err == nil {
		if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
			return "", fmt.Errorf("detach old root: %w", err)
		}
		if err := unix.Chdir("/"); err != nil {
			return "", fmt.Errorf("enter jail root: %w", err)
		}
		return "pivot_root", nil
	}
	if err != unix.EINVAL {
		return "", fmt.Errorf("pivot_root: %w", err)
	}
	// The root is rootfs (initramfs), which cannot be pivoted away.
	if err := unix.Mount(newRoot, "/", "", unix.MS_MOVE, ""); err != nil {
		return "", fmt.Errorf("move jail root over /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return "", fmt.Errorf("chroot into jail root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return "", fmt.Errorf("enter jail root: %w", err)
	}
	return "MS_MOVE and chroot (the root is an initramfs, pivot_root refused it)", nil
}
