package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// A feature is something of the kernel that applications use and AWS's
// enclave kernel has: a system call, a namespace, a cgroup controller, a
// file system, a network facility.
type feature struct {
	name string
	// probe returns errMissing, or the ENOSYS / EAFNOSUPPORT a kernel built
	// without the feature answers, when the feature is not there; any
	// other result (success or another error) means the kernel has it.
	probe func() error
}

// errMissing is a probe's answer for a feature whose file is not there.
var errMissing = errors.New("missing")

// missingFeatures returns the names of the features of fs the running
// kernel lacks, in fs's order.
func missingFeatures(fs []feature) []string {
	var out []string
	for _, f := range fs {
		err := f.probe()
		if errors.Is(err, errMissing) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EAFNOSUPPORT) {
			out = append(out, f.name)
		}
	}
	return out
}

// syscallErr makes a raw system call's error number an error (nil for 0).
func syscallErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// closeFD takes a raw system call's results and closes the descriptor it
// returned, if it did.
func closeFD(fd, _ uintptr, e unix.Errno) error {
	if e == 0 {
		unix.Close(int(fd))
	}
	return syscallErr(e)
}

// fileExists returns errMissing unless path exists; a symbolic link
// counts whatever it points to.
func fileExists(path string) func() error {
	return func() error {
		if _, err := os.Lstat(path); err != nil {
			return errMissing
		}
		return nil
	}
}

// fileHas returns errMissing unless the file path has a line one of whose
// fields is want.
func fileHas(path, want string) func() error {
	return func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return errMissing
		}
		for _, l := range strings.Split(string(b), "\n") {
			if slices.Contains(strings.Fields(l), want) {
				return nil
			}
		}
		return errMissing
	}
}

// Arguments of the probes (include/uapi/linux/...).
const (
	ipcPrivate         = 0      // IPC_PRIVATE
	ipcRmid            = 0      // IPC_RMID
	membarrierCmdQuery = 0      // MEMBARRIER_CMD_QUERY
	seccompGetAction   = 2      // SECCOMP_GET_ACTION_AVAIL
	keyctlGetKeyringID = 0      // KEYCTL_GET_KEYRING_ID
	keySpecProcess     = -2     // KEY_SPEC_PROCESS_KEYRING
	fanClassNotif      = 0      // FAN_CLASS_NOTIF
	bpfProgLoad        = 5      // BPF_PROG_LOAD
	uffdUserModeOnly   = 1      // UFFD_USER_MODE_ONLY
	ioUringMaxEntries  = 1 << 8 // a ring size io_uring_setup accepts
)

// appFeatures returns the features TestBoot requires of the enclave
// kernel. Each probe's call is made so that it does nothing lasting.
func appFeatures() []feature {
	return []feature{
		{"sysvipc", func() error {
			id, _, e := unix.Syscall(unix.SYS_MSGGET, ipcPrivate, unix.IPC_CREAT|0o600, 0)
			if e == 0 {
				unix.Syscall(unix.SYS_MSGCTL, id, ipcRmid, 0)
			}
			return syscallErr(e)
		}},
		{"process_vm_readv", func() error {
			_, _, e := unix.Syscall6(unix.SYS_PROCESS_VM_READV, uintptr(os.Getpid()), 0, 0, 0, 0, 0)
			return syscallErr(e)
		}},
		{"name_to_handle_at", func() error {
			_, _, err := unix.NameToHandleAt(unix.AT_FDCWD, "/", 0)
			return err
		}},
		{"madvise", func() error {
			b, err := unix.Mmap(-1, 0, os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
			if err != nil {
				return nil // not what is probed
			}
			defer unix.Munmap(b)
			return unix.Madvise(b, unix.MADV_DONTNEED)
		}},
		{"membarrier", func() error {
			_, _, e := unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdQuery, 0, 0)
			return syscallErr(e)
		}},
		{"rseq", func() error {
			// A null area of length 0: EINVAL where the call exists.
			_, _, e := unix.Syscall6(unix.SYS_RSEQ, 0, 0, 0, 0, 0, 0)
			return syscallErr(e)
		}},
		{"aio", func() error {
			_, _, e := unix.Syscall(unix.SYS_IO_SETUP, 0, 0, 0) // EINVAL: 0 events
			return syscallErr(e)
		}},
		{"io_uring", func() error {
			// No parameters: EFAULT where the call exists.
			return closeFD(unix.Syscall(unix.SYS_IO_URING_SETUP, ioUringMaxEntries, 0, 0))
		}},
		{"bpf", func() error {
			_, _, e := unix.Syscall(unix.SYS_BPF, bpfProgLoad, 0, 0) // EINVAL or EPERM
			return syscallErr(e)
		}},
		{"userfaultfd", func() error {
			return closeFD(unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|uffdUserModeOnly, 0, 0))
		}},
		{"seccomp", func() error {
			// No action to ask about: EFAULT where the call exists.
			_, _, e := unix.Syscall(unix.SYS_SECCOMP, seccompGetAction, 0, 0)
			return syscallErr(e)
		}},
		{"inotify", func() error {
			return closeFD(unix.Syscall(unix.SYS_INOTIFY_INIT1, unix.IN_CLOEXEC, 0, 0))
		}},
		{"fanotify", func() error {
			return closeFD(unix.Syscall(unix.SYS_FANOTIFY_INIT, fanClassNotif|unix.FAN_CLOEXEC, unix.O_RDONLY, 0))
		}},
		{"keyctl", func() error {
			_, _, e := unix.Syscall(unix.SYS_KEYCTL, keyctlGetKeyringID, uintptr(keySpecProcess&0xffffffff), 0)
			return syscallErr(e)
		}},
		{"modify_ldt", func() error {
			_, _, e := unix.Syscall(unix.SYS_MODIFY_LDT, 0, 0, 0) // reads 0 bytes
			return syscallErr(e)
		}},
		{"cachestat", func() error {
			_, _, e := unix.Syscall6(unix.SYS_CACHESTAT, ^uintptr(0), 0, 0, 0, 0, 0) // EBADF
			return syscallErr(e)
		}},
		{"memfd_secret", func() error {
			return closeFD(unix.Syscall(unix.SYS_MEMFD_SECRET, unix.O_CLOEXEC, 0, 0))
		}},
		{"ia32", fileExists("/proc/sys/abi/vsyscall32")},
		{"coredump", fileExists("/proc/sys/kernel/core_pattern")},
		{"proc/children", fileExists(fmt.Sprintf("/proc/self/task/%d/children", os.Getpid()))},
		{"ns/uts", fileExists("/proc/self/ns/uts")},
		{"ns/ipc", fileExists("/proc/self/ns/ipc")},
		{"ns/user", fileExists("/proc/self/ns/user")},
		{"ns/pid", fileExists("/proc/self/ns/pid")},
		{"ns/net", fileExists("/proc/self/ns/net")},
		{"ns/time", fileExists("/proc/self/ns/time")},
		{"cgroup/memory", fileHas("/proc/cgroups", "memory")},
		{"cgroup/pids", fileHas("/proc/cgroups", "pids")},
		{"cgroup/cpu", fileHas("/proc/cgroups", "cpu")},
		{"cgroup/cpuset", fileHas("/proc/cgroups", "cpuset")},
		{"fs/overlay", fileHas("/proc/filesystems", "overlay")},
		{"fs/hugetlbfs", fileHas("/proc/filesystems", "hugetlbfs")},
		{"fs/mqueue", fileHas("/proc/filesystems", "mqueue")},
		{"fs/binfmt_misc", fileHas("/proc/filesystems", "binfmt_misc")},
		{"fs/configfs", fileHas("/proc/filesystems", "configfs")},
		{"af_packet", func() error {
			return closeFD(unix.Syscall(unix.SYS_SOCKET, unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0))
		}},
		{"tun", fileExists("/dev/net/tun")},
		{"iptables/REDIRECT", fileHas("/proc/net/ip_tables_targets", "REDIRECT")},
		{"iptables/MASQUERADE", fileHas("/proc/net/ip_tables_targets", "MASQUERADE")},
		{"iptables/conntrack", fileHas("/proc/net/ip_tables_matches", "conntrack")},
		{"ip6tables", fileExists("/proc/net/ip6_tables_names")},
		{"bpf_jit", fileExists("/proc/sys/net/core/bpf_jit_enable")},
	}
}
