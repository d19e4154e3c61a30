package enclave

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/nitrovm/nitrovm/internal/timerslack"
)

// logsDir is the state directory's subdirectory for supervisor logs, which
// outlive their enclaves so failed starts can be diagnosed.
const logsDir = "logs"

// LogPath returns the supervisor log file of the enclave with the given ID.
func (s Store) LogPath(id string) string {
	return filepath.Join(s.Dir, logsDir, id+".log")
}

// ExecSpawner starts supervisors as detached processes:
// "Executable Args... <enclave dir>", in a new session, with stdin from
// /dev/null, stdout and stderr appended to the enclave's log file, and the
// start status pipe as file descriptor 3.
type ExecSpawner struct {
	Executable string
	Args       []string // e.g. {"supervise"}
}

// StatusFD is the file descriptor on which a spawned supervisor finds its
// start status pipe.
const StatusFD = 3

// Spawn implements Spawner.Spawn.
func (e ExecSpawner) Spawn(_ context.Context, dir string) (io.ReadCloser, error) {
	store := Store{Dir: filepath.Dir(dir)}
	if err := os.MkdirAll(filepath.Join(store.Dir, logsDir), 0o700); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	logf, err := os.OpenFile(store.LogPath(filepath.Base(dir)), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open supervisor log: %w", err)
	}
	defer logf.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	defer null.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create status pipe: %w", err)
	}
	defer w.Close()
	args := append(append([]string(nil), e.Args...), dir)
	cmd := exec.Command(e.Executable, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, logf, logf
	cmd.ExtraFiles = []*os.File{w} // becomes StatusFD
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	env := supervisorEnv(os.Environ())
	// A root supervisor gets its own mount, IPC and UTS namespaces (see
	// supervisor.contain); a non-root one would need a user namespace,
	// and hosts such as containers may refuse them: the supervisor then
	// runs without and logs why.
	ns := "none: not started as root (the namespaces would need a user namespace)"
	if os.Geteuid() == 0 {
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS
		cmd.Env = append(env, NamespacesEnv+"=mnt,ipc,uts")
		err := startSupervisor(cmd)
		if err == nil {
			return r, releaseSupervisor(cmd, r)
		}
		if !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOSPC) {
			r.Close()
			return nil, fmt.Errorf("start %s: %w", e.Executable, err)
		}
		ns = fmt.Sprintf("none: the host refused new namespaces (%v)", err)
		cmd = exec.Command(e.Executable, args...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = null, logf, logf
		cmd.ExtraFiles = []*os.File{w}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	cmd.Env = append(env, NamespacesEnv+"="+ns)
	if err := startSupervisor(cmd); err != nil {
		r.Close()
		return nil, fmt.Errorf("start %s: %w", e.Executable, err)
	}
	return r, releaseSupervisor(cmd, r)
}

// startSupervisor starts cmd with what the supervisor inherits from the
// thread that forks it: transparent huge pages disabled (startWithoutTHP)
// and the VMM's timer slack (timerslack.VMM; a kernel that refuses it
// leaves the default).
func startSupervisor(cmd *exec.Cmd) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if restore, err := timerslack.SetThread(timerslack.VMM); err == nil {
		defer restore()
	}
	return startWithoutTHP(cmd)
}

// releaseSupervisor lets the started supervisor run on its own; r is
// closed on failure.
func releaseSupervisor(cmd *exec.Cmd, r io.Closer) error {
	if err := cmd.Process.Release(); err != nil {
		r.Close()
		return fmt.Errorf("release supervisor: %w", err)
	}
	return nil
}

// supervisorEnv returns env with GODEBUG=disablethp=1 added unless env
// already sets disablethp: on hosts whose transparent huge pages are
// "always", the Go heap of the long-lived supervisor (which is also the
// VMM) would otherwise be backed by 2 MiB pages and triple its resident
// memory. Guest RAM is a separate mapping and is not affected.
func supervisorEnv(env []string) []string {
	out := make([]string, 0, len(env)+1)
	found := false
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			found = true
			if !strings.Contains(v, "disablethp=") {
				kv = "GODEBUG=" + strings.TrimPrefix(v+",disablethp=1", ",")
			}
		}
		out = append(out, kv)
	}
	if !found {
		out = append(out, "GODEBUG=disablethp=1")
	}
	return out
}
