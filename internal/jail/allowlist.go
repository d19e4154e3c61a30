package jail

import (
	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/sys/unix"

	"github.com/nitrovm/nitrovm/internal/kvm"
)

// This file is the VMM's seccomp allowlist: every syscall the supervisor
// may make once its VM is built, grouped, each group with the reason it is
// needed. Anything else is refused with the filter's action (kill by
// default). Review every change: the guest drives the device emulation,
// so this list bounds what a guest that takes over the VMM can do.
//
// Deliberately absent: execve/execveat, fork (clone without
// CLONE_THREAD, clone3, vfork), ptrace, process_vm_*, bind/listen (every
// listener exists before the filter), mount/umount/pivot_root, setuid and
// friends, capset, prctl, seccomp, bpf, perf_event_open, keyctl,
// init_module, kexec, reboot, chmod/chown, link/symlink, memfd_create,
// userfaultfd, io_uring_*, and ioctl requests other than those below.

// allowlist is the list of syscall groups; Policy turns it into a filter.
var allowlist = []struct {
	reason string
	names  []string
}{
	{"Go runtime memory: heap and stacks are mmap'd, returned with madvise, guarded with mprotect", []string{
		"mmap", "munmap", "madvise", "mprotect",
	}},
	{"Go runtime scheduling: futexes, yielding, sleeping, per-thread signals for preemption (tgkill to its own threads), GOMAXPROCS updates (sched_getaffinity), exiting", []string{
		"futex", "sched_yield", "nanosleep", "gettid", "getpid", "tgkill",
		"sched_getaffinity", "restart_syscall", "exit", "exit_group",
	}},
	{"Go runtime signal handling (os/signal for SIGTERM, SIGUSR1 dumps)", []string{
		"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
	}},
	{"clocks, when the vDSO falls back to the syscall (e.g. a nested guest's clocksource)", []string{
		"clock_gettime", "gettimeofday", "time",
	}},
	{"Go's network poller (epoll) and its wake-up eventfd; KVM ioeventfds are eventfds too", []string{
		"epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_wait", "eventfd2", "pipe2",
	}},
	{"I/O on open descriptors: KVM's stats fd, eventfds, sockets, the log", []string{
		"read", "write", "readv", "writev", "pread64", "pwrite64", "close", "lseek", "fcntl", "fstat",
	}},
	{"the enclave's state directory (record rewrites, the events log, removal at exit) and the KMS key store; the mount namespace and the unprivileged user bound which files these reach", []string{
		"openat", "newfstatat", "getdents64", "unlinkat", "renameat", "renameat2", "mkdirat",
		"fsync", "fdatasync", "flock",
	}},
	{"vsock host side: accepting on listeners opened before the filter, dialing forwards (TCP, Unix, AF_VSOCK), moving bytes (splice and sendfile are io.Copy's fast paths)", []string{
		"connect", "accept4", "getsockname", "getpeername", "setsockopt", "getsockopt", "shutdown",
		"sendto", "recvfrom", "sendmsg", "recvmsg", "splice", "sendfile",
	}},
	{"randomness for attestation nonces, TLS (local KMS) and Go's maps", []string{
		"getrandom",
	}},
	{"Go's os and net packages read the kernel version to pick fast paths", []string{
		"uname",
	}},
}

// socketFamilies are the address families socket(2) may create: Unix and
// TCP for --forward and the local KMS's TLS clients, AF_VSOCK for
// --af-vsock.
var socketFamilies = []uint64{unix.AF_UNIX, unix.AF_INET, unix.AF_INET6, unix.AF_VSOCK}

// otherIoctls are the ioctl requests besides KVM's.
var otherIoctls = []kvm.Ioctl{
	// Go's os package asks whether a descriptor is a terminal (isatty)
	// and sets non-blocking mode with FIONBIO on some paths.
	{Name: "TCGETS", Request: unix.TCGETS},
	{Name: "FIONBIO", Request: fionbio},
	// Bytes waiting on a socket.
	{Name: "FIONREAD", Request: fionread},
	// mdlayher/vsock reads the local CID (--af-vsock).
	{Name: "IOCTL_VM_SOCKETS_GET_LOCAL_CID", Request: unix.IOCTL_VM_SOCKETS_GET_LOCAL_CID},
}

// Ioctls returns the ioctl requests the filter allows: internal/kvm's
// (the only package issuing KVM ioctls) and otherIoctls.
func Ioctls() []kvm.Ioctl {
	return append(kvm.Ioctls(), otherIoctls...)
}

// Policy returns the allowlist as a seccomp policy whose default action is
// deny.
func Policy(deny seccomp.Action) seccomp.Policy {
	var names []string
	for _, g := range allowlist {
		names = append(names, g.names...)
	}
	// Threads only: clone must carry CLONE_THREAD, so the VMM cannot fork.
	clone := seccomp.NameWithConditions{Name: "clone", Conditions: seccomp.ArgumentConditions{
		{Argument: 0, Operation: seccomp.BitsSet, Value: unix.CLONE_THREAD},
	}}
	// The calling thread's own CPU affinity only (pid 0): a vCPU thread
	// confines itself to the VM's vCPU CPUs when it starts
	// (vmm.Config.VCPUCPUs).
	setaffinity := seccomp.NameWithConditions{Name: "sched_setaffinity", Conditions: seccomp.ArgumentConditions{
		{Argument: 0, Operation: seccomp.Equal, Value: 0},
	}}
	var cond []seccomp.NameWithConditions
	cond = append(cond, clone, setaffinity)
	for _, f := range socketFamilies {
		cond = append(cond, seccomp.NameWithConditions{Name: "socket", Conditions: seccomp.ArgumentConditions{
			{Argument: 0, Operation: seccomp.Equal, Value: f},
		}})
	}
	for _, io := range Ioctls() {
		cond = append(cond, seccomp.NameWithConditions{Name: "ioctl", Conditions: seccomp.ArgumentConditions{
			{Argument: 1, Operation: seccomp.Equal, Value: io.Request},
		}})
	}
	return seccomp.Policy{
		DefaultAction: deny,
		Syscalls: []seccomp.SyscallGroup{{
			Names:              names,
			NamesWithCondtions: cond,
			Action:             seccomp.ActionAllow,
		}, {
			// nitrovm is built without cgo; a cgo build's glibc threads
			// try clone3 first and fall back to clone on ENOSYS (clone3
			// passes its flags in memory, where the filter cannot check
			// CLONE_THREAD: ENOSYS as in Docker's default profile, and the
			// checked clone above does the work), and register rseq,
			// which glibc does without when the kernel says ENOSYS.
			Names:  []string{"clone3", "rseq"},
			Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS),
		}},
	}
}

// AllowedSyscalls returns the number of syscalls the filter allows (with
// or without argument conditions), for logs and docs.
func AllowedSyscalls() int {
	n := 4 // clone, sched_setaffinity, socket, ioctl
	for _, g := range allowlist {
		n += len(g.names)
	}
	return n
}

// Generic ioctl requests (include/uapi/asm-generic/ioctls.h), not in
// x/sys/unix for every architecture.
const (
	fionread = 0x541b // FIONREAD
	fionbio  = 0x5421 // FIONBIO
)

// FuzzWorkerExtra is what a Go fuzzing worker needs beyond the VMM's
// allowlist (see internal/jail/jailtest): nothing so far; the coordinator,
// which forks and execs the workers, is not filtered.
var FuzzWorkerExtra []string
