package jail

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Identity is the unprivileged user and group a supervisor started as root
// runs as.
type Identity struct {
	UID, GID int
}

// nobody is the identity used when /etc/passwd has no "nobody" (the
// overflow IDs of most distributions).
const nobody = 65534

// ResolveIdentity turns --uid and --gid values (a name or a number; ""
// for the default) into an Identity. The default user is "nobody" and the
// default group that user's primary group ("nogroup" on Debian), else
// 65534. It reads /etc/passwd and /etc/group, so it must run before the
// mount namespace hides them.
func ResolveIdentity(user, group string) (Identity, error) {
	id := Identity{UID: nobody, GID: nobody}
	if user == "" {
		user = "nobody"
	}
	uid, ugid, err := lookup("/etc/passwd", user)
	switch {
	case err == nil:
		id.UID, id.GID = uid, ugid
	case user != "nobody":
		return Identity{}, fmt.Errorf("--uid %s: %w", user, err)
	}
	if group != "" {
		gid, _, err := lookup("/etc/group", group)
		if err != nil {
			return Identity{}, fmt.Errorf("--gid %s: %w", group, err)
		}
		id.GID = gid
	}
	if id.UID == 0 || id.GID == 0 {
		return Identity{}, errors.New("--uid/--gid: the supervisor's identity must not be root (0)")
	}
	return id, nil
}

// lookup resolves name (or a decimal ID, returned as is) in an
// /etc/passwd-format file: its ID (field 3) and, for passwd, its primary
// group (field 4).
func lookup(file, name string) (id, gid int, err error) {
	if n, err := strconv.Atoi(name); err == nil {
		if n < 0 {
			return 0, 0, fmt.Errorf("negative ID %d", n)
		}
		return n, n, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Split(sc.Text(), ":")
		if len(fs) < 4 || fs[0] != name {
			continue
		}
		id, err1 := strconv.Atoi(fs[2])
		gid, err2 := strconv.Atoi(fs[3])
		if err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("malformed %s entry for %s", file, name)
		}
		return id, gid, nil
	}
	return 0, 0, fmt.Errorf("no %q in %s", name, file)
}

// DropPrivileges makes the process run as id with no supplementary groups
// and no capabilities at all (effective, permitted, inheritable, ambient
// and bounding sets empty), on every thread. The caller must be root.
func DropPrivileges(id Identity) error {
	// The bounding set can only shrink with CAP_SETPCAP, so before the
	// identity changes.
	if err := DropBoundingSet(); err != nil {
		return err
	}
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("clear supplementary groups: %w", err)
	}
	if err := syscall.Setresgid(id.GID, id.GID, id.GID); err != nil {
		return fmt.Errorf("set group %d: %w", id.GID, err)
	}
	// Without SECBIT_KEEP_CAPS, leaving UID 0 clears the effective and
	// permitted sets (and the ambient set).
	if err := syscall.Setresuid(id.UID, id.UID, id.UID); err != nil {
		return fmt.Errorf("set user %d: %w", id.UID, err)
	}
	return ClearCapabilities()
}

// DropBoundingSet empties every thread's capability bounding set, so
// that not even an execve of a privileged binary could regain a
// capability. It needs CAP_SETPCAP (root).
func DropBoundingSet() error {
	for c := 0; c <= lastCap(); c++ {
		if _, _, e := allThreads(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); e != 0 {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, e)
		}
	}
	return nil
}

// ClearCapabilities empties the ambient, effective, permitted and
// inheritable capability sets of every thread; lowering them needs no
// privilege, so it also serves non-root supervisors (which keep their
// bounding set: shrinking it needs CAP_SETPCAP).
func ClearCapabilities() error {
	if _, _, e := allThreads(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); e != 0 && e != unix.EINVAL {
		return fmt.Errorf("clear ambient capabilities: %w", e)
	}
	if e := capsetZero(); e != 0 {
		return fmt.Errorf("clear capabilities: %w", e)
	}
	return nil
}

// allThreads runs a syscall on every thread of the process; in a cgo
// binary (tests only) it runs on the calling thread, locked to it.
func allThreads(trap, a1, a2, a3 uintptr) (uintptr, uintptr, syscall.Errno) {
	r1, r2, e := syscall.AllThreadsSyscall(trap, a1, a2, a3)
	if e == syscall.ENOTSUP {
		return syscall.RawSyscall(trap, a1, a2, a3)
	}
	return r1, r2, e
}

// lastCap returns the highest capability number the kernel knows.
func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			return n
		}
	}
	return unix.CAP_LAST_CAP
}
