// Package pseudofs mounts the pseudo file systems that our init processes
// (the test guest's and the nested L1's) need before anything else runs.
package pseudofs

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Mount is one file system to mount.
type Mount struct {
	Source, Target, FSType string
}

// Basic returns /proc, /sys, /dev (devtmpfs) and /tmp (tmpfs).
func Basic() []Mount {
	return []Mount{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
	}
}

// MountAll creates each target directory and mounts the file system on it,
// in order. A target that is already mounted (EBUSY) is fine.
func MountAll(ms []Mount) error {
	for _, m := range ms {
		if err := os.MkdirAll(m.Target, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", m.Target, err)
		}
		if err := unix.Mount(m.Source, m.Target, m.FSType, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.FSType, m.Target, err)
		}
	}
	return nil
}
