package jail

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// SetLimits sets RLIMIT_NOFILE (soft and hard, so it cannot be raised
// back) to nofile and RLIMIT_CORE to 0: guest memory must never land in a
// core file (guest RAM is also MADV_DONTDUMP).
func SetLimits(nofile uint64) error {
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return fmt.Errorf("set RLIMIT_CORE: %w", err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: nofile, Max: nofile}); err != nil {
		return fmt.Errorf("set RLIMIT_NOFILE to %d: %w", nofile, err)
	}
	return nil
}

// OpenFDs returns the number of descriptors the process has open.
func OpenFDs() (int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	return len(ents) - 1, nil // minus ReadDir's own
}

// CgroupRoot is where the cgroup v2 hierarchy is mounted.
const CgroupRoot = "/sys/fs/cgroup"

// CheckCgroup returns the cgroup directory path names (absolute, or
// relative to CgroupRoot) and an error naming the problem when it is not
// a cgroup v2 directory.
func CheckCgroup(path string) (string, error) {
	if !filepath.IsAbs(path) {
		path = filepath.Join(CgroupRoot, path)
	}
	if _, err := os.Stat(filepath.Join(path, "cgroup.procs")); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if _, err := os.Stat(filepath.Join(CgroupRoot, "cgroup.controllers")); err != nil {
				return "", fmt.Errorf("--cgroup %s: no cgroup v2 hierarchy at %s", path, CgroupRoot)
			}
			return "", fmt.Errorf("--cgroup %s: not a cgroup v2 directory (no cgroup.procs); create it first", path)
		}
		return "", fmt.Errorf("--cgroup %s: %w", path, err)
	}
	return path, nil
}

// JoinCgroup moves the process (all its threads) into the cgroup v2
// directory path (absolute, or relative to CgroupRoot), whose CPU and
// memory limits then apply to the VMM and its guest. The cgroup must
// exist and be writable (delegated) by the caller.
func JoinCgroup(path string) error {
	path, err := CheckCgroup(path)
	if err != nil {
		return err
	}
	err = os.WriteFile(filepath.Join(path, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0)
	switch {
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("--cgroup %s: not delegated to this user (cannot write cgroup.procs)", path)
	case err != nil && strings.Contains(err.Error(), "device or resource busy"):
		return fmt.Errorf("--cgroup %s: the cgroup has controllers enabled for its children, so it cannot hold processes; use a leaf cgroup", path)
	case err != nil:
		return fmt.Errorf("--cgroup %s: %w", path, err)
	}
	return nil
}
