package jail

import (
	"fmt"
	"syscall"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/sys/unix"
)

// Action is what the seccomp filter does with a syscall outside the
// allowlist.
type Action string

// Actions for ParseAction and InstallSeccomp.
const (
	// ActionKill kills the whole process (SECCOMP_RET_KILL_PROCESS); the
	// kernel logs the offending syscall (SECCOMP_FILTER_FLAG_LOG). The
	// default.
	ActionKill Action = "kill"
	// ActionErrno fails the syscall with EPERM, logged.
	ActionErrno Action = "errno"
	// ActionLog allows the syscall and logs it: for finding what a new
	// code path needs.
	ActionLog Action = "log"
	// ActionOff installs no filter (debugging only).
	ActionOff Action = "off"
)

// ParseAction parses a --seccomp-action value; "" means ActionKill.
func ParseAction(s string) (Action, error) {
	switch a := Action(s); a {
	case "":
		return ActionKill, nil
	case ActionKill, ActionErrno, ActionLog, ActionOff:
		return a, nil
	}
	return "", fmt.Errorf("invalid seccomp action %q (want kill, errno, log or off)", s)
}

func (a Action) seccompAction() seccomp.Action {
	switch a {
	case ActionErrno:
		return seccomp.ActionErrno // EPERM
	case ActionLog:
		return seccomp.ActionLog
	}
	return seccomp.ActionKillProcess
}

// Filter returns the VMM's seccomp filter for action a: the allowlist of
// allowlist.go, refusing everything else with a. It sets no_new_privs
// (required to install a filter without CAP_SYS_ADMIN) and synchronizes
// all threads (TSYNC), so the Go runtime's existing threads are covered
// too.
func Filter(a Action) seccomp.Filter {
	return filter(a, nil)
}

func filter(a Action, extra []string) seccomp.Filter {
	p := Policy(a.seccompAction())
	p.Syscalls[0].Names = append(p.Syscalls[0].Names, extra...)
	return seccomp.Filter{
		NoNewPrivs: true,
		Flag:       seccomp.FilterFlagTSync | seccomp.FilterFlagLog,
		Policy:     p,
	}
}

// InstallSeccomp sets no_new_privs on every thread and installs Filter(a)
// on every thread of the process. It does nothing for ActionOff. Once it
// returned, only the allowlisted syscalls run.
func InstallSeccomp(a Action) error {
	return InstallSeccompExtra(a, nil)
}

// InstallSeccompExtra is InstallSeccomp with the syscalls named in extra
// allowed too; only test harnesses use it (FuzzWorkerExtra).
func InstallSeccompExtra(a Action, extra []string) error {
	if a == ActionOff {
		return nil
	}
	if err := SetNoNewPrivs(); err != nil {
		return err
	}
	if err := seccomp.LoadFilter(filter(a, extra)); err != nil {
		return fmt.Errorf("install seccomp filter: %w", err)
	}
	return nil
}

// SetNoNewPrivs sets PR_SET_NO_NEW_PRIVS on every thread of the process:
// execve can no longer grant privileges (setuid bits, file capabilities).
// In a cgo binary (tests only: nitrovm is built without cgo), where Go
// cannot run a syscall on all threads, it sets the calling thread's bit;
// a filter installed with TSYNC then sets it on the others.
func SetNoNewPrivs() error {
	_, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0)
	if e == syscall.ENOTSUP {
		e = 0
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			e = err.(syscall.Errno)
		}
	}
	if e != 0 {
		return fmt.Errorf("set no_new_privs: %w", e)
	}
	return nil
}
