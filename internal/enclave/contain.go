package enclave

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nitrovm/nitrovm/internal/devices/virtio/vsock"
	"github.com/nitrovm/nitrovm/internal/jail"
)

// NamespacesEnv is set by ExecSpawner for the supervisor: "mnt,ipc,uts"
// when it runs in new mount, IPC and UTS namespaces, else "none: " and
// the reason, which the supervisor logs.
const NamespacesEnv = "NITROVM_SUPERVISOR_NAMESPACES"

// ProbeEnv, set to 1 in run-enclave's environment, makes the supervisor
// call sysinfo(2), which the seccomp allowlist does not contain, right
// after it contained itself: a check that the filter is on (with the
// default action the supervisor dies of SIGSYS and the enclave is gone).
// It exists for tests and for checking a deployment.
const ProbeEnv = "NITROVM_SECCOMP_PROBE"

// jailRootDir is the directory in an enclave directory on which the
// supervisor mounts its empty root.
const jailRootDir = ".jail-root"

// fdsPerConn bounds the host descriptors one vsock connection holds (its
// socket, and a splice pipe pair while copying); fdSlack covers the
// listeners, logs and accepts in flight.
const (
	fdsPerConn = 3
	fdSlack    = 64
)

// checkJail validates a Jail configuration before anything is reserved.
func checkJail(j Jail) error {
	if _, err := jail.ParseAction(j.SeccompAction); err != nil {
		return newErr(KindInvalidArgument, "Invalid argument provided. The parameter `seccomp-action` is not valid: %v", err)
	}
	if (j.User != "" || j.Group != "") && os.Geteuid() != 0 {
		return newErr(KindInvalidArgument, "Invalid argument provided. --uid and --gid need run-enclave to run as root (a non-root supervisor keeps its user)")
	}
	if j.Cgroup != "" {
		if _, err := jail.CheckCgroup(j.Cgroup); err != nil {
			return newErr(KindInvalidArgument, "Invalid argument provided. %v", err)
		}
	}
	if os.Geteuid() == 0 {
		if _, err := jail.ResolveIdentity(j.User, j.Group); err != nil {
			return newErr(KindInvalidArgument, "Invalid argument provided. %v", err)
		}
	}
	return nil
}

// contain runs once the VM is built and before its first vCPU runs: it
// joins the cgroup, confines the mount namespace to what the enclave
// still needs, sets the limits, drops to the unprivileged identity with
// no capabilities and installs the seccomp filter (in that order: each
// step needs rights the next one takes away).
func (s *supervisor) contain(runtimePaths []string) error {
	rec := s.snapshot()
	j := rec.Jail
	action, err := jail.ParseAction(j.SeccompAction)
	if err != nil {
		return err
	}
	root := os.Geteuid() == 0
	var id jail.Identity
	if root {
		if id, err = jail.ResolveIdentity(j.User, j.Group); err != nil {
			return err
		}
	}
	if j.Cgroup != "" {
		if err := jail.JoinCgroup(j.Cgroup); err != nil {
			return err
		}
		s.logger.Info("jail: joined cgroup", "cgroup", j.Cgroup)
	}

	// The state directory's lock and events log stay reachable through
	// descriptors opened now.
	if err := s.openStoreFiles(); err != nil {
		return err
	}
	// The local KMS's key store is shared with 'kms serve' and owned by
	// the invoking user, so with --kms the supervisor keeps its user ID
	// (still without any capability).
	keepUser := !root || rec.KMS
	if root && !keepUser {
		if err := os.Chown(s.dir, id.UID, id.GID); err != nil {
			return fmt.Errorf("hand the enclave directory to the supervisor's user: %w", err)
		}
		// That user must be able to pass through the state directory
		// to its own wherever the real one stays visible: without a
		// mount namespace, or when a bind shows one of its ancestors
		// (--vsock-uds /run/app.sock with the state in /run/nitrovm).
		// 0711: others may traverse it, not list it.
		if fi, err := os.Stat(s.store.Dir); err == nil && fi.Mode().Perm()&0o011 != 0o011 {
			if err := os.Chmod(s.store.Dir, fi.Mode().Perm()|0o011); err != nil {
				return fmt.Errorf("let the supervisor's user traverse the state directory: %w", err)
			}
		}
	}

	switch ns := s.namespaces; {
	case !strings.HasPrefix(ns, "mnt"):
		s.logger.Warn("jail: no mount namespace, every file the supervisor's user can reach stays visible", "reason", strings.TrimPrefix(ns, "none: "))
	default:
		how, err := jail.Confine(filepath.Join(s.dir, jailRootDir), s.binds(rec, runtimePaths))
		if err != nil {
			return err
		}
		s.logger.Info("jail: mount namespace confined", "namespaces", ns, "root", how)
	}

	fds, err := jail.OpenFDs()
	if err != nil {
		fds = fdSlack
	}
	nofile := uint64(fds + fdsPerConn*vsock.MaxConns + fdSlack)
	if err := jail.SetLimits(nofile); err != nil {
		return err
	}

	switch {
	case root && !keepUser:
		if err := jail.DropPrivileges(id); err != nil {
			return err
		}
	case root:
		if err := jail.DropBoundingSet(); err != nil {
			return err
		}
		fallthrough
	default:
		if err := jail.ClearCapabilities(); err != nil {
			return err
		}
	}
	uid, gid := os.Getuid(), os.Getgid() // getuid is not in the allowlist
	if err := jail.InstallSeccomp(action); err != nil {
		return err
	}
	s.logger.Info("jail: contained", "uid", uid, "gid", gid, "kept_user", keepUser,
		"seccomp", string(action), "allowed_syscalls", jail.AllowedSyscalls(), "ioctls", len(jail.Ioctls()),
		"nofile", nofile)
	if s.probe {
		s.logger.Warn("jail: " + ProbeEnv + "=1: calling sysinfo(2), outside the seccomp allowlist")
		var si unix.Sysinfo_t
		err := unix.Sysinfo(&si)
		s.logger.Warn("jail: sysinfo(2) returned", "err", err)
	}
	return nil
}

// binds lists what stays visible in the supervisor's mount namespace: its
// enclave directory, the directory of its hybrid vsock socket (where the
// guest's connections to UDS_PORT sockets are dialed), /dev/kvm, the
// resolver's files (for --forward host names) and runtimePaths.
func (s *supervisor) binds(rec *Record, runtimePaths []string) []jail.Bind {
	bs := []jail.Bind{{Path: s.dir}}
	add := func(p string, ro bool) {
		if p == "" {
			return
		}
		for _, b := range bs {
			if p == b.Path || strings.HasPrefix(p, b.Path+"/") {
				return // already visible
			}
		}
		if _, err := os.Stat(p); err == nil {
			bs = append(bs, jail.Bind{Path: p, ReadOnly: ro})
		}
	}
	if rec.VsockUDS != "" {
		add(filepath.Dir(rec.VsockUDS), false)
	}
	add("/dev/kvm", false)
	for _, p := range runtimePaths {
		add(p, false)
	}
	for _, p := range []string{"/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf"} {
		add(p, true)
	}
	return bs
}

// openStoreFiles opens the state directory's lock and events log, which
// the confined supervisor can no longer reach by path.
func (s *supervisor) openStoreFiles() error {
	lk, err := os.OpenFile(filepath.Join(s.store.Dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open state lock: %w", err)
	}
	ev, err := os.OpenFile(filepath.Join(s.store.Dir, eventsFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		lk.Close()
		return fmt.Errorf("open events log: %w", err)
	}
	s.lockFile, s.eventsFile = lk, ev
	return nil
}

// appendEvent adds line to the events log.
func (s *supervisor) appendEvent(line []byte) error {
	if s.eventsFile == nil {
		return s.store.appendEvent(line)
	}
	if _, err := s.eventsFile.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("write events log: %w", err)
	}
	return nil
}

// removeDir frees the enclave directory under the state lock. A contained
// supervisor can only empty it (its parent is out of reach): it removes
// the record first, which makes the rest debris that the next command
// scanning the state directory removes (Store.scanLocked).
func (s *supervisor) removeDir() error {
	if s.lockFile == nil {
		return s.store.remove(s.dir)
	}
	if err := lockExclusive(s.lockFile); err != nil {
		return fmt.Errorf("lock state directory: %w", err)
	}
	defer unix.Flock(int(s.lockFile.Fd()), unix.LOCK_UN)
	if err := os.Remove(filepath.Join(s.dir, recordFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove enclave record: %w", err)
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("read enclave directory: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if e.Name() == jailRootDir {
			continue // the mount point of this process's root
		}
		errs = append(errs, os.RemoveAll(filepath.Join(s.dir, e.Name())))
	}
	// Fails when confined (the directory is a mount point and its parent
	// out of reach): the empty directory is then left for the next scan.
	os.Remove(s.dir)
	return errors.Join(errs...)
}
